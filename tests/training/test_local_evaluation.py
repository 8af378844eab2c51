"""Local evaluation: a model scored on a site's labelled folder through the worker's path."""

from pathlib import Path

import numpy as np
import pytest

from runtime.predictor import Predictor
from tests.helpers import TALEQANI, generated_set, labelled_folder, noise_png, package
from training.data import DatasetError
from training.local_evaluation import evaluate_folder
from training.report import local_evaluation_warnings

TALEQANI_CLASSES = ["Benign", "Early", "Pre", "Pro"]


def _expected_accuracy(predictor: Predictor, data_dir: Path) -> float:
    """The same images through Predictor.predict, the worker's call, one folder at a time."""
    right = total = 0
    for folder in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        arrays = [predictor.prepare(f.read_bytes()) for f in sorted(folder.iterdir())]
        answers, _ = predictor.predict(arrays)
        right += sum(a.label == folder.name for a in answers)
        total += len(answers)
    return right / total


def test_it_scores_a_labelled_folder_as_the_worker_would(artifacts, tmp_path):
    predictor = Predictor.load(artifacts["v1"])
    data_dir = generated_set(tmp_path / "site")
    result = evaluate_folder(predictor, data_dir)

    assert result["n"] == 12
    assert result["classes_present"] == ["healthy", "ALL", "AML"]
    metrics = result["metrics"]
    assert metrics["accuracy"] == pytest.approx(_expected_accuracy(predictor, data_dir))
    matrix = np.asarray(metrics["confusion_matrix"])
    assert matrix.shape == (5, 5) and matrix.sum() == 12
    assert matrix[:3].sum(axis=1).tolist() == [4, 4, 4] and matrix[3:].sum() == 0
    assert 0.0 <= result["ece"] <= 1.0
    assert result["review"]["threshold"] == predictor.confidence_threshold
    assert result["colour_baseline"]["folds"] == 4
    assert 0.0 <= result["colour_baseline"]["mcnemar_p"] <= 1.0
    assert result["out_of_scope"] is None  # this artifact has no guard
    assert "No images of CLL, CML" in " ".join(local_evaluation_warnings(result, None))


def test_duplicates_are_scored_once_and_unreadable_files_are_left_out_and_named(
    artifacts, tmp_path
):
    data_dir = generated_set(tmp_path / "site")
    (data_dir / "ALL" / "copy.png").write_bytes((data_dir / "ALL" / "0.png").read_bytes())
    (data_dir / "AML" / "broken.png").write_bytes(noise_png(99)[:200])
    result = evaluate_folder(Predictor.load(artifacts["v1"]), data_dir)
    assert result["n"] == 12
    assert result["duplicates_dropped"] == 1
    assert result["unreadable_count"] == 1 and result["unreadable"][0].startswith("AML/broken.png")
    assert "1 file(s) could not be decoded" in " ".join(local_evaluation_warnings(result, None))


def test_a_folder_naming_no_class_of_the_model_is_refused_unless_mapped(artifacts, tmp_path):
    data_dir = labelled_folder(
        tmp_path / "site",
        {"normal": [noise_png(1), noise_png(2)], "AML": [noise_png(3), noise_png(4)]},
    )
    predictor = Predictor.load(artifacts["v1"])
    with pytest.raises(DatasetError, match=r"normal: not among the model's classes"):
        evaluate_folder(predictor, data_dir)
    result = evaluate_folder(predictor, data_dir, label_map={"normal": "healthy"})
    assert result["classes_present"] == ["healthy", "AML"]


def test_it_scores_real_taleqani_smears(tmp_path):
    files = {label: sorted((TALEQANI / label).glob("*.jpg"))[:5] for label in TALEQANI_CLASSES}
    if not all(len(found) == 5 for found in files.values()):
        pytest.skip(f"the Taleqani images are not in {TALEQANI}")
    data_dir = tmp_path / "site"
    for label, paths in files.items():
        (data_dir / label).mkdir(parents=True)
        for path in paths:  # links, not copies: the shared images stay where they are
            (data_dir / label / path.name).symlink_to(path.resolve())
    folder = package(
        tmp_path / "art",
        version="1",
        seed=5,
        name="taleqani-tiny",
        classes=TALEQANI_CLASSES,
        metrics={"accuracy": 0.25, "macro_f1": 0.2, "ece_before": 0.1, "ece_after": 0.1},
        temperature=1.0,
        confidence_threshold=0.5,
        synthetic=False,  # untrained, but the images are real
    )
    predictor = Predictor.load(folder)
    result = evaluate_folder(predictor, data_dir)
    assert result["n"] == 20 and result["classes_present"] == TALEQANI_CLASSES
    assert result["metrics"]["accuracy"] == pytest.approx(_expected_accuracy(predictor, data_dir))
    assert np.asarray(result["metrics"]["confusion_matrix"]).sum() == 20
    # Colour alone separates this set well (about 89 % on the whole of it).
    assert result["colour_baseline"]["folds"] == 5
    assert result["colour_baseline"]["accuracy"] > 0.5


def test_the_warnings_name_a_drop_from_the_report_and_a_colour_shortcut():
    result = {
        "metrics": {"accuracy": 0.70, "per_class": {"ALL": {}, "AML": {}}},
        "classes_present": ["ALL", "AML"],
        "colour_baseline": {"accuracy": 0.90, "mcnemar_p": 1.0, "folds": 5},
        "unreadable_count": 0,
    }
    warnings = local_evaluation_warnings(result, reported_accuracy=0.99)
    assert warnings[0].startswith("Accuracy here is 70.0%, 29.0 points below the 99.0%")
    assert warnings[1].startswith("Colour statistics alone separate these classes 90.0%")
    assert len(warnings) == 2
    result["colour_baseline"] = {"accuracy": 0.5, "mcnemar_p": 0.001, "folds": 5}
    assert local_evaluation_warnings(result, reported_accuracy=0.72) == []
