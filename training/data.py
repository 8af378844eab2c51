"""Dataset scanning, label mapping, de-duplication, fingerprinting and the seeded split.

The split is made on unique images (by content hash) BEFORE any augmentation, so no
copy of a picture can sit on both sides: the study split after augmenting, we do not.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from runtime.preprocess import load_for_model

log = logging.getLogger(__name__)

#: The study's folder names mapped to LeukWeb's canonical labels.
STUDY_LABEL_MAP: dict[str, str] = {
    "healthy_blood_cell": "healthy",
    "acute_lymphocytic": "ALL",
    "acute_myelogenous": "AML",
    "chronic_lymphocytic": "CLL",
    "chronic_myelogenous": "CML",
}

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm"}
)
SPLITS = ("train", "validation", "test")
SYNTHETIC_MARKER = "SYNTHETIC.txt"


class DatasetError(ValueError):
    """The data folder, label map, group file or split cannot be used as asked."""


@dataclass(frozen=True)
class Sample:
    """One unique image: where it is (relative to the data folder), its label and hash."""

    path: str
    label: str
    sha256: str
    group: str = ""
    source: str = ""  # lab, scanner or batch, from the group CSV's optional 'source' column


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_label_map(path: Path | None) -> dict[str, str]:
    """Folder -> label: the study's map plus a JSON object or two-column CSV (folder,label)."""
    mapping = dict(STUDY_LABEL_MAP)
    if path is None:
        return mapping
    text = Path(path).read_text(encoding="utf-8")
    if Path(path).suffix.lower() == ".json":
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"label map {path} is not valid JSON: {exc}") from exc
        if not isinstance(loaded, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in loaded.items()
        ):
            raise DatasetError(f"label map {path} must be a JSON object of folder -> label")
        mapping.update(loaded)
        return mapping
    for row in csv.reader(text.splitlines()):
        if not row or row[0].startswith("#"):
            continue
        if len(row) != 2:
            raise DatasetError(f"label map {path}: expected 'folder,label' rows, got {row!r}")
        folder, label = row[0].strip(), row[1].strip()
        if (folder, label) == ("folder", "label"):
            continue
        mapping[folder] = label
    return mapping


def scan_folder(root: Path, label_map: Mapping[str, str] | None = None) -> list[Sample]:
    """Every image file under ``root/<class folder>/`` (recursively), hashed and labelled."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"data folder {root} does not exist or is not a folder")
    mapping = dict(STUDY_LABEL_MAP if label_map is None else label_map)
    samples: list[Sample] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        label = mapping.get(folder.name, folder.name)
        for file in sorted(folder.rglob("*")):
            if (
                file.is_file()
                and file.suffix.lower() in IMAGE_SUFFIXES
                and not file.name.startswith(".")
            ):
                rel = file.relative_to(root).as_posix()
                samples.append(Sample(path=rel, label=label, sha256=file_sha256(file)))
    if not samples:
        raise DatasetError(f"no images found in class sub-folders of {root}")
    return samples


@dataclass
class DedupeResult:
    samples: list[Sample]
    duplicates: int  # copies dropped because an identical image was kept
    conflicts: list[str]  # hashes dropped because copies carried different labels
    aliases: dict[str, list[str]]  # kept sha256 -> every path that held those bytes


def deduplicate(samples: Iterable[Sample]) -> DedupeResult:
    """Keep one copy per content hash; drop images whose copies disagree on the label."""
    by_hash: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_hash[s.sha256].append(s)
    kept: list[Sample] = []
    conflicts: list[str] = []
    duplicates = 0
    aliases: dict[str, list[str]] = {}
    for digest in sorted(by_hash):
        copies = sorted(by_hash[digest], key=lambda s: s.path)
        if len({s.label for s in copies}) > 1:
            conflicts.append(digest)
            log.warning(
                "dropping %s: identical bytes labelled %s",
                [s.path for s in copies],
                sorted({s.label for s in copies}),
            )
            continue
        kept.append(copies[0])
        duplicates += len(copies) - 1
        aliases[digest] = [s.path for s in copies]
    kept.sort(key=lambda s: s.path)
    return DedupeResult(kept, duplicates, conflicts, aliases)


def dataset_fingerprint(samples: Iterable[Sample]) -> str:
    """sha256 over the sorted (label, content hash) pairs: same images and labels, same print."""
    digest = hashlib.sha256()
    for label, sha in sorted({(s.label, s.sha256) for s in samples}):
        digest.update(f"{label}\t{sha}\n".encode())
    return digest.hexdigest()


def read_groups(path: Path) -> dict[str, str]:
    """Image -> group (patient, slide, source) from a CSV with columns ``image,group``.

    ``image`` may be a path relative to the data folder or a bare file name.
    """
    groups: dict[str, str] = {}
    with Path(path).open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = {f.strip().lower() for f in reader.fieldnames or []}
        if not {"image", "group"} <= fields:
            raise DatasetError(f"group file {path} needs a header with 'image' and 'group'")
        for row in reader:
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            if row["image"] and row["group"]:
                groups[row["image"]] = row["group"]
    if not groups:
        raise DatasetError(f"group file {path} lists no images")
    return groups


def read_sources(path: Path) -> dict[str, str]:
    """Image -> source from the group CSV's optional ``source`` column ({} without one)."""
    with Path(path).open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if "source" not in {f.strip().lower() for f in reader.fieldnames or []}:
            return {}
        out = {}
        for row in reader:
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            if row.get("image") and row.get("source"):
                out[row["image"]] = row["source"]
        return out


def attach_sources(samples: Sequence[Sample], sources: Mapping[str, str]) -> list[Sample]:
    """Give each sample its source (by relative path, else by file name)."""
    return [
        replace(s, source=sources.get(s.path) or sources.get(Path(s.path).name) or "")
        for s in samples
    ]


def attach_groups(dedup: DedupeResult, groups: Mapping[str, str]) -> list[Sample]:
    """Give each sample its group; identical images tie their groups together (union-find)."""
    parent: dict[str, str] = {}

    def find(g: str) -> str:
        while parent.setdefault(g, g) != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    def group_of(path: str) -> str | None:
        return groups.get(path) or groups.get(Path(path).name)

    raw: dict[str, str] = {}
    missing = 0
    for s in dedup.samples:
        names = [g for p in dedup.aliases.get(s.sha256, [s.path]) if (g := group_of(p))]
        if not names:
            missing += 1
            names = [f"__image__:{s.sha256}"]  # ungrouped: its own group
        for other in names[1:]:
            parent[find(other)] = find(names[0])
        raw[s.sha256] = names[0]
    if missing:
        log.warning("%d images have no group in the group file; each is its own group", missing)
    return [
        Sample(path=s.path, label=s.label, sha256=s.sha256, group=find(raw[s.sha256]))
        for s in dedup.samples
    ]


def split_samples(
    samples: Sequence[Sample],
    *,
    seed: int,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.2,
    grouped: bool = False,
) -> dict[str, list[Sample]]:
    """Stratified seeded split: ``test_fraction`` to test, ``validation_fraction`` of the rest.

    With ``grouped`` every sample's ``group`` stays whole on one side (stratified group
    folds, falling back to a group shuffle split when classes have too few groups).
    """
    if len({s.sha256 for s in samples}) != len(samples):
        raise DatasetError("split_samples needs de-duplicated samples (one per content hash)")
    items = sorted(samples, key=lambda s: s.sha256)  # order-independent of the file system
    test_idx, rest_idx = _split_once(items, list(range(len(items))), test_fraction, seed, grouped)
    val_idx, train_idx = _split_once(items, rest_idx, validation_fraction, seed + 1, grouped)
    out = {
        "train": [items[i] for i in sorted(train_idx)],
        "validation": [items[i] for i in sorted(val_idx)],
        "test": [items[i] for i in sorted(test_idx)],
    }
    for name, part in out.items():
        if not part:
            raise DatasetError(f"the {name} split is empty: too few images ({len(items)})")
    return out


def _split_once(
    items: Sequence[Sample], idx: list[int], fraction: float, seed: int, grouped: bool
) -> tuple[list[int], list[int]]:
    """Return (held-out, kept) index lists with about ``fraction`` held out."""
    from sklearn.model_selection import (
        GroupShuffleSplit,
        StratifiedGroupKFold,
        train_test_split,
    )

    labels = np.array([items[i].label for i in idx])
    idx_arr = np.array(idx)
    if not grouped:
        counts = np.unique(labels, return_counts=True)[1]
        stratify = labels if counts.min() >= 2 else None
        if stratify is None:
            log.warning("a class has fewer than 2 images: splitting without stratification")
        try:
            kept, held = train_test_split(
                idx_arr, test_size=fraction, random_state=seed, shuffle=True, stratify=stratify
            )
        except ValueError as exc:  # fewer held-out images than classes
            log.warning("stratified split impossible (%s): splitting at random", exc)
            kept, held = train_test_split(
                idx_arr, test_size=fraction, random_state=seed, shuffle=True
            )
        return sorted(held.tolist()), sorted(kept.tolist())
    groups = np.array([items[i].group for i in idx])
    n_splits = max(2, round(1 / fraction))
    if len(set(groups.tolist())) >= n_splits:
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
                kept, held = next(folds.split(idx_arr, labels, groups))
            if len(held) and len(kept):
                return sorted(idx_arr[held].tolist()), sorted(idx_arr[kept].tolist())
        except ValueError as exc:
            log.warning("stratified group split failed (%s); using a group shuffle split", exc)
    if len(set(groups.tolist())) < 2:
        raise DatasetError("a group-aware split needs at least two groups")
    splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    kept, held = next(splitter.split(idx_arr, labels, groups))
    return sorted(idx_arr[held].tolist()), sorted(idx_arr[kept].tolist())


@dataclass
class PreparedData:
    """What a training run works from: the split, its classes and its provenance."""

    data_dir: str
    classes: list[str]
    splits: dict[str, list[Sample]]
    fingerprint: str
    seed: int
    duplicates_dropped: int
    conflicts_dropped: int
    grouped: bool
    synthetic: bool
    test_fraction: float = 0.2
    validation_fraction: float = 0.2

    def sizes(self) -> dict[str, int]:
        return {name: len(self.splits[name]) for name in SPLITS}

    def to_json(self) -> dict:
        return {
            "data_dir": self.data_dir,
            "classes": self.classes,
            "fingerprint": self.fingerprint,
            "seed": self.seed,
            "test_fraction": self.test_fraction,
            "validation_fraction": self.validation_fraction,
            "grouped": self.grouped,
            "synthetic": self.synthetic,
            "duplicates_dropped": self.duplicates_dropped,
            "conflicts_dropped": self.conflicts_dropped,
            "sizes": self.sizes(),
            "splits": {name: [asdict(s) for s in self.splits[name]] for name in SPLITS},
        }

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> PreparedData:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(
            data_dir=raw["data_dir"],
            classes=list(raw["classes"]),
            splits={name: [Sample(**s) for s in raw["splits"][name]] for name in SPLITS},
            fingerprint=raw["fingerprint"],
            seed=int(raw["seed"]),
            duplicates_dropped=int(raw.get("duplicates_dropped", 0)),
            conflicts_dropped=int(raw.get("conflicts_dropped", 0)),
            grouped=bool(raw.get("grouped", False)),
            synthetic=bool(raw.get("synthetic", False)),
            test_fraction=float(raw.get("test_fraction", 0.2)),
            validation_fraction=float(raw.get("validation_fraction", 0.2)),
        )


def prepare(
    data_dir: Path,
    *,
    seed: int = 42,
    label_map: Mapping[str, str] | None = None,
    groups_csv: Path | None = None,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.2,
) -> PreparedData:
    """Scan, de-duplicate, fingerprint and split a class-per-folder data set."""
    data_dir = Path(data_dir).resolve()
    dedup = deduplicate(scan_folder(data_dir, label_map))
    samples = dedup.samples
    if groups_csv is not None:
        samples = attach_sources(
            attach_groups(dedup, read_groups(groups_csv)), read_sources(groups_csv)
        )
    classes = sorted({s.label for s in samples})
    if len(classes) < 2:
        raise DatasetError(f"need at least two classes, found {classes}")
    splits = split_samples(
        samples,
        seed=seed,
        test_fraction=test_fraction,
        validation_fraction=validation_fraction,
        grouped=groups_csv is not None,
    )
    log.info(
        "%d images, %d duplicate copies dropped, %d conflicting hashes dropped; classes %s",
        len(samples),
        dedup.duplicates,
        len(dedup.conflicts),
        classes,
    )
    return PreparedData(
        data_dir=str(data_dir),
        classes=classes,
        splits=splits,
        fingerprint=dataset_fingerprint(samples),
        seed=seed,
        duplicates_dropped=dedup.duplicates,
        conflicts_dropped=len(dedup.conflicts),
        grouped=groups_csv is not None,
        synthetic=(data_dir / SYNTHETIC_MARKER).exists(),
        test_fraction=test_fraction,
        validation_fraction=validation_fraction,
    )


def load_images(
    data_dir: Path, samples: Sequence[Sample], classes: Sequence[str], size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Decode and resize every sample: (N, size, size, 3) uint8 and (N,) int class indices."""
    index = {c: i for i, c in enumerate(classes)}
    x = np.empty((len(samples), size, size, 3), dtype=np.uint8)
    y = np.empty(len(samples), dtype=np.int64)
    for i, s in enumerate(samples):
        x[i] = load_for_model((Path(data_dir) / s.path).read_bytes(), size)
        y[i] = index[s.label]
    return x, y


def sources_of(prepared: PreparedData) -> list[str]:
    """Distinct non-empty sources over all splits, sorted."""
    return sorted({s.source for part in prepared.splits.values() for s in part if s.source})


def leave_one_source_out(prepared: PreparedData, source: str) -> PreparedData:
    """Test on every image of ``source``; split the other sources into train/validation.

    Groups stay whole (the validation split is group-aware when the data is grouped).
    """
    everything = [s for part in prepared.splits.values() for s in part]
    held = sorted((s for s in everything if s.source == source), key=lambda s: s.sha256)
    rest = sorted((s for s in everything if s.source != source), key=lambda s: s.sha256)
    if not held:
        raise DatasetError(f"no images from source {source!r}")
    if len({s.label for s in rest}) < 2:
        raise DatasetError(f"without {source!r} fewer than two classes are left to train on")
    val_idx, train_idx = _split_once(
        rest,
        list(range(len(rest))),
        prepared.validation_fraction,
        prepared.seed + 1,
        prepared.grouped,
    )
    splits = {
        "train": [rest[i] for i in train_idx],
        "validation": [rest[i] for i in val_idx],
        "test": held,
    }
    return replace(prepared, splits=splits)
