"""The CLI's smaller commands: synth, export-augmented, demo-model, compare, and errors."""

import json

import numpy as np
import pytest
from PIL import Image

from tests.helpers import fresh_python
from training.cli import build_parser, main
from training.data import SYNTHETIC_MARKER


def test_every_subcommand_has_help():
    parser = build_parser()
    for command in (
        "train",
        "evaluate",
        "compare",
        "tabulate",
        "synth",
        "export-augmented",
        "demo-model",
    ):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([command, "--help"])
        assert exc.value.code == 0


def test_cli_help_is_fast_and_django_free():
    code = (
        "import sys\n"
        "from training.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert not any(m.startswith('django') for m in sys.modules)\n"
        "assert 'tensorflow' not in sys.modules, 'help should not load TensorFlow'\n"
    )
    out = fresh_python(code, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    for command in ("train", "evaluate", "compare", "synth", "export-augmented", "demo-model"):
        assert command in out.stdout


def test_train_defaults_follow_the_study():
    args = build_parser().parse_args(["train", "data"])
    assert (args.epochs, args.patience, args.arch, args.weights) == (100, 15, "cml1", "none")


def test_synth_writes_a_marked_deterministic_dataset(tmp_path):
    assert main(["synth", str(tmp_path / "a"), "--per-class", "2", "--size", "32"]) == 0
    assert main(["synth", str(tmp_path / "b"), "--per-class", "2", "--size", "32"]) == 0
    assert (tmp_path / "a" / SYNTHETIC_MARKER).is_file()
    files = sorted((tmp_path / "a").rglob("*.png"))
    assert len(files) == 10
    for f in files:
        other = tmp_path / "b" / f.relative_to(tmp_path / "a")
        assert f.read_bytes() == other.read_bytes()


def test_export_augmented_writes_a_balanced_set(synthetic_dir, tmp_path):
    out = tmp_path / "aug"
    assert (
        main(
            [
                "export-augmented",
                str(synthetic_dir),
                "--out",
                str(out),
                "--per-class",
                "3",
                "--img-size",
                "32",
            ]
        )
        == 0
    )
    for label in ("healthy", "ALL", "AML", "CLL", "CML"):
        imgs = sorted((out / label).glob("*.png"))
        assert len(imgs) == 3
        assert np.asarray(Image.open(imgs[0])).shape == (32, 32, 3)


def test_a_missing_data_folder_is_a_clean_error(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_model_is_marked_synthetic(tmp_path):
    from training.compare import demo_model

    art, _ = demo_model(tmp_path, per_class=6, epochs=1, size=32)
    manifest = json.loads((art / "manifest.json").read_text())
    assert art.name == "demo-synthetic-1"
    assert manifest["synthetic"] is True
    assert manifest["ood"]["method"] == "multi-check"  # the demo model carries the guard too
    assert manifest["classes"] == sorted(["healthy", "ALL", "AML", "CLL", "CML"])
    assert "NOT FOR CLINICAL USE" in (art / "report.html").read_text()
    with pytest.raises(Exception, match="exists"):
        demo_model(tmp_path, per_class=6, epochs=1, size=32)


@pytest.mark.slow
def test_compare_tabulates_and_draws_a_bar_chart(synthetic_dir, tmp_path, tiny_run):
    assert (
        main(
            [
                "compare",
                str(synthetic_dir),
                "--archs",
                "cml1",
                "mobilenet",
                "--img-size",
                "32",
                "--epochs",
                "1",
                "--batch-size",
                "16",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    out = next(tmp_path.glob("compare-*"))
    table = json.loads((out / "comparison.json").read_text())
    assert [r["arch"] for r in table["rows"]] == ["cml1", "mobilenet"]
    assert (out / "comparison.svg").is_file()
    assert "baseline: colour_stats" in (out / "comparison.md").read_text()
    assert (
        main(
            [
                "tabulate",
                str(out / "cml1"),
                str(out / "mobilenet"),
                "--out",
                str(tmp_path / "again"),
            ]
        )
        == 0
    )
    again = json.loads((tmp_path / "again" / "comparison.json").read_text())
    assert [r["accuracy"] for r in again["rows"]] == [r["accuracy"] for r in table["rows"]]
    # a run on another split (seed 1) must not be tabulated beside these
    assert (
        main(
            ["tabulate", str(out / "cml1"), str(tiny_run.run_dir), "--out", str(tmp_path / "mixed")]
        )
        == 2
    )
