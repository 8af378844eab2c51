"""Clinical validity in the pipeline: robustness, per source, LOSO, the guard, old formats."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from runtime.artifact import ArtifactError, load_guard, load_packaged
from training.nonsmear import KINDS


@pytest.mark.slow
def test_every_report_has_robustness_and_the_guard(tiny_run):
    report = tiny_run.report
    kinds = {r["kind"] for r in report["robustness"]["shifts"]}
    assert kinds == {"hue", "saturation", "brightness", "hed", "grayscale"}
    assert 0 <= report["robustness"]["clean"]["accuracy"] <= 1
    assert all(0 <= r["out_of_scope"] <= 1 for r in report["robustness"]["shifts"])
    assert report["robustness"]["clean"]["accuracy"] == pytest.approx(
        report["evaluation"]["test"]["accuracy"]
    )
    assert report["ood"]["method"] == "multi-check" and report["ood"]["packaged"]
    assert set(report["ood"]["flagged"]) == {
        "validation",
        "test",
        *(f"generated {k}" for k in KINDS),
    }
    # every flagged image is put down to a check the guard has
    for name, counts in report["ood"]["reasons"].items():
        assert set(counts) <= set(report["ood"]["checks"])
        assert (sum(counts.values()) > 0) == (report["ood"]["flagged"][name] > 0)
    assert report["per_source"] is None  # no source column given
    html = (tiny_run.artifact_dir / "report.html").read_text()
    assert "Robustness to colour and stain shifts" in html and "Out-of-scope guard" in html
    assert (tiny_run.artifact_dir / "robustness.svg").is_file()


@pytest.mark.slow
def test_every_trained_report_opens_with_the_colour_blind_check(tiny_run):
    from training.cli import _summary
    from training.report import colour_blind_line

    report = tiny_run.report
    grey = next(r for r in report["robustness"]["shifts"] if r["kind"] == "grayscale")
    check = report["colour_blind"]
    assert check["grayscale_accuracy"] == grey["accuracy"]
    assert check["colour_baseline_accuracy"] == report["baselines"]["colour_stats"]["accuracy"]
    html = (tiny_run.artifact_dir / "report.html").read_text()
    assert 'id="colour-blind"' in html
    assert html.index('id="colour-blind"') < html.index("<h2>Test split</h2>")
    assert _summary(report).splitlines()[0] == colour_blind_line(check)
    assert report["color_augmentation"]["recipe"] == "strong"  # the default recipe


@pytest.mark.slow
def test_the_packaged_guard_is_hashed_and_loads(tiny_run, tmp_path):
    _, manifest = load_packaged(tiny_run.artifact_dir)
    assert manifest.format_version == 3 and manifest.ood["file"] == "ood.npz"
    guard = load_guard(tiny_run.artifact_dir, manifest)
    assert guard is not None  # a format-2 artifact has one
    assert guard.layer == manifest.ood["layer"] == "bn2+bn3+bn4+dense2+input"
    assert guard.threshold == pytest.approx(manifest.ood["threshold"])
    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_run.artifact_dir, damaged)
    with np.load(damaged / "ood.npz") as z:
        params = dict(z)
    params["threshold"] = np.float64(1e9)  # a guard that never flags
    with (damaged / "ood.npz").open("wb") as fh:
        np.savez(fh, **params)
    with pytest.raises(ArtifactError, match="out-of-scope guard"):
        load_packaged(damaged)


def _as_format_1(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    (dst / "ood.npz").unlink()
    raw = json.loads((dst / "manifest.json").read_text())
    raw["format_version"] = 1
    del raw["ood"]
    (dst / "manifest.json").write_text(json.dumps(raw))
    return dst


@pytest.mark.slow
def test_format_1_artifacts_still_load_without_a_guard(tiny_run, tmp_path):
    old = _as_format_1(tiny_run.artifact_dir, tmp_path / "old")
    _, manifest = load_packaged(old)
    assert manifest.format_version == 1 and manifest.ood is None
    assert load_guard(old, manifest) is None


@pytest.mark.slow
def test_add_guard_upgrades_a_format_1_artifact(tiny_run, tmp_path):
    from training.validity import add_guard, ood_check

    old = _as_format_1(tiny_run.artifact_dir, tmp_path / "old")
    new = add_guard(old, run_dir=tiny_run.run_dir, out=tmp_path / "new", version="g")
    _, manifest = load_packaged(new)
    assert manifest.format_version == 3 and manifest.version == "g"
    assert (new / "report.json").is_file()
    with pytest.raises(ArtifactError, match="no out-of-scope guard"):
        ood_check(old, [], per_kind=2)
    result = ood_check(new, [], per_kind=4, run_dir=tiny_run.run_dir)
    assert result["sets"]["generated noise"]["n"] == 4
    assert 0 <= result["sets"]["test split"]["rate"] <= 1


def test_a_macenko_run_is_refused_before_it_trains_since_no_worker_could_serve_it(
    synthetic_dir, tmp_path
):
    from training.train import TrainConfig, run_training

    cfg = TrainConfig(data_dir=str(synthetic_dir), out=str(tmp_path), stain_normalize="macenko")
    with pytest.raises(ValueError, match="no ONNX equivalent"):
        run_training(cfg)
    assert not any(tmp_path.rglob("manifest.json"))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["reinhard"])
def test_a_stain_normalised_stain_augmented_run_packages_the_layer(synthetic_dir, tmp_path, method):
    from training.train import TrainConfig, run_training

    cfg = TrainConfig(
        data_dir=str(synthetic_dir),
        arch="cml1",
        img_size=32,
        epochs=1,
        patience=1,
        batch_size=16,
        seed=2,
        out=str(tmp_path),
        name="norm",
        version="1",
        color_augment="light",
        stain_normalize=method,
    )
    result = run_training(cfg)
    model, manifest = load_packaged(result.artifact_dir)  # needs the registered layer
    layer = model.get_layer("stain_normalize").get_config()
    reference = result.report["stain_normalization"]
    assert manifest.extra["stain_normalization"]["method"] == reference["method"] == method
    key = "target_mean" if method == "reinhard" else "max_concentrations"
    assert layer[key] == pytest.approx(reference["mean" if method == "reinhard" else key])
    assert result.report["config"]["color_augment"] == "light"
    assert result.report["color_augmentation"]["hed_sigma"] == 0.1


def _groups_with_sources(data_dir: Path, path: Path) -> Path:
    """Every image its own group; class folders spread over two 'labs' alternately."""
    files = sorted(p for p in data_dir.rglob("*.png"))
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "group", "source"])
        for i, f in enumerate(files):
            w.writerow([f.relative_to(data_dir).as_posix(), f"g{i}", f"lab{i % 2}"])
    return path


@pytest.mark.slow
def test_sources_give_per_source_metrics_and_a_leave_one_source_out_run(synthetic_dir, tmp_path):
    from training.train import TrainConfig
    from training.validity import run_loso

    groups = _groups_with_sources(synthetic_dir, tmp_path / "groups.csv")
    cfg = TrainConfig(
        data_dir=str(synthetic_dir),
        arch="cml1",
        img_size=32,
        epochs=1,
        patience=1,
        batch_size=16,
        seed=3,
        groups=str(groups),
        out=str(tmp_path),
    )
    summary = run_loso(cfg, tmp_path / "loso")
    assert summary["sources"] == ["lab0", "lab1"]
    for row in summary["rows"]:
        run = json.loads((Path(row["run_dir"]) / "report.json").read_text())
        held = json.loads((Path(row["run_dir"]) / "split.json").read_text())["splits"]
        assert {s["source"] for s in held["test"]} == {row["held_out"]}
        assert row["held_out"] not in {s["source"] for s in held["train"] + held["validation"]}
        assert list(run["per_source"]) == [row["held_out"]]
        assert run["per_source"][row["held_out"]]["n"] == row["sizes"]["test"]
    assert "| lab0 |" in (tmp_path / "loso" / "loso.md").read_text()
