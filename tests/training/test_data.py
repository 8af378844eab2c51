"""De-duplication, fingerprint and the split: no content hash may cross train/val/test."""

import collections
import shutil

import pytest

from tests.helpers import TALEQANI
from training import data as D


def _hash_sets(splits):
    return {name: {s.sha256 for s in part} for name, part in splits.items()}


def _assert_disjoint(splits):
    h = _hash_sets(splits)
    assert not h["train"] & h["validation"]
    assert not h["train"] & h["test"]
    assert not h["validation"] & h["test"]


def test_duplicates_are_removed_before_splitting(synthetic_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synthetic_dir, data)
    for i in range(5):  # exact copies under other names
        src = data / "ALL" / f"synthetic-ALL-{i:04d}.png"
        shutil.copy(src, data / "ALL" / f"copy-{i}.png")
    prepared = D.prepare(data, seed=7)
    assert prepared.duplicates_dropped == 5
    assert sum(prepared.sizes().values()) == 60
    _assert_disjoint(prepared.splits)


def test_conflicting_labels_for_identical_bytes_are_dropped(synthetic_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synthetic_dir, data)
    shutil.copy(data / "ALL" / "synthetic-ALL-0000.png", data / "AML" / "stray.png")
    prepared = D.prepare(data, seed=7)
    assert prepared.conflicts_dropped == 1
    assert sum(prepared.sizes().values()) == 59


def test_split_is_stratified_seeded_and_20_20(synthetic_dir):
    a = D.prepare(synthetic_dir, seed=11)
    b = D.prepare(synthetic_dir, seed=11)
    c = D.prepare(synthetic_dir, seed=12)
    assert a.sizes() == {"train": 38, "validation": 10, "test": 12}
    assert _hash_sets(a.splits) == _hash_sets(b.splits)
    assert _hash_sets(a.splits) != _hash_sets(c.splits)
    test_counts = collections.Counter(s.label for s in a.splits["test"])
    assert max(test_counts.values()) - min(test_counts.values()) <= 1  # stratified
    _assert_disjoint(a.splits)


def test_fingerprint_depends_on_content_and_labels_only(synthetic_dir, tmp_path):
    samples = D.deduplicate(D.scan_folder(synthetic_dir)).samples
    renamed = [D.Sample(path="x/" + s.path, label=s.label, sha256=s.sha256) for s in samples]
    assert D.dataset_fingerprint(samples) == D.dataset_fingerprint(reversed(renamed))
    relabelled = [
        D.Sample(s.path, "other" if i == 0 else s.label, s.sha256) for i, s in enumerate(samples)
    ]
    assert D.dataset_fingerprint(samples) != D.dataset_fingerprint(relabelled)


def test_study_folder_names_map_to_canonical_labels(tmp_path):
    from PIL import Image

    for i, folder in enumerate(["healthy_blood_cell", "acute_lymphocytic", "odd_one"]):
        (tmp_path / folder).mkdir()
        for j in range(2):
            Image.new("RGB", (4, 4), (i * 40, j * 9, 7)).save(tmp_path / folder / f"{j}.png")
    labels = {s.label for s in D.scan_folder(tmp_path)}
    assert labels == {"healthy", "ALL", "odd_one"}
    mapping = tmp_path / "map.csv"
    mapping.write_text("folder,label\nodd_one,CML\n")
    assert {s.label for s in D.scan_folder(tmp_path, D.read_label_map(mapping))} == {
        "healthy",
        "ALL",
        "CML",
    }


def test_group_aware_split_keeps_groups_whole(synthetic_dir, tmp_path):
    csv = tmp_path / "groups.csv"
    rows = ["image,group"]
    for f in sorted(synthetic_dir.rglob("*.png")):
        idx = int(f.stem.rsplit("-", 1)[1])
        rows.append(f"{f.parent.name}/{f.name},{f.parent.name}-patient{idx // 2}")
    csv.write_text("\n".join(rows) + "\n")
    prepared = D.prepare(synthetic_dir, seed=5, groups_csv=csv)
    assert prepared.grouped
    side: dict[str, str] = {}
    for name, part in prepared.splits.items():
        for s in part:
            assert side.setdefault(s.group, name) == name, f"group {s.group} split across sides"
    assert len(side) == 30
    _assert_disjoint(prepared.splits)


def test_identical_images_tie_their_groups_together(synthetic_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synthetic_dir, data)
    shutil.copy(data / "CLL" / "synthetic-CLL-0000.png", data / "CLL" / "again.png")
    csv = tmp_path / "groups.csv"
    csv.write_text(
        "image,group\nsynthetic-CLL-0000.png,p1\nagain.png,p2\nsynthetic-CLL-0001.png,p2\n"
    )
    prepared = D.prepare(data, seed=5, groups_csv=csv)
    groups = {s.sha256: s.group for part in prepared.splits.values() for s in part}
    first = D.file_sha256(data / "CLL" / "synthetic-CLL-0000.png")
    second = D.file_sha256(data / "CLL" / "synthetic-CLL-0001.png")
    assert groups[first] == groups[second]  # p1 and p2 share an image, so one group


def test_split_round_trips_through_json(synthetic_dir, tmp_path):
    prepared = D.prepare(synthetic_dir, seed=2)
    prepared.save(tmp_path / "split.json")
    again = D.PreparedData.load(tmp_path / "split.json")
    assert again.splits == prepared.splits and again.fingerprint == prepared.fingerprint


def test_real_taleqani_split_never_shares_a_content_hash():
    if not TALEQANI.is_dir():
        pytest.skip(f"shared Taleqani data not found at {TALEQANI}")
    prepared = D.prepare(TALEQANI, seed=42)
    assert prepared.classes == ["Benign", "Early", "Pre", "Pro"]
    assert prepared.duplicates_dropped == 40  # the 40 duplicate pairs in Pro
    assert sum(prepared.sizes().values()) == 3256 - 40
    _assert_disjoint(prepared.splits)
    assert prepared.sizes()["test"] == pytest.approx(0.2 * 3216, abs=2)


def test_tiny_sets_still_split_when_stratification_is_impossible(tmp_path):
    from PIL import Image

    for c in range(5):
        (tmp_path / f"c{c}").mkdir()
        for j in range(2):
            Image.new("RGB", (4, 4), (c * 40, j * 100, 3)).save(tmp_path / f"c{c}" / f"{j}.png")
    prepared = D.prepare(tmp_path, seed=0)
    assert sum(prepared.sizes().values()) == 10
    _assert_disjoint(prepared.splits)
