"""The colour-blind check: grayscale accuracy beside the colour baseline, at a report's top."""

from __future__ import annotations

import pytest

from training.report import colour_blind, colour_blind_line


def _report(grey: float, clean: float = 0.99, colour: float = 0.96) -> dict:
    return {
        "robustness": {
            "clean": {"accuracy": clean, "macro_f1": clean},
            "shifts": [
                {"kind": "hue", "accuracy": 0.1, "macro_f1": 0.1},
                {"kind": "grayscale", "accuracy": grey, "macro_f1": grey - 0.01},
            ],
        },
        "baselines": {"colour_stats": {"accuracy": colour}},
        "evaluation": {"test": {"per_class": {"a": {"support": 30}, "b": {"support": 70}}}},
    }


def test_the_check_takes_the_grayscale_row_and_the_colour_baseline():
    check = colour_blind(_report(0.31))
    assert check is not None
    assert check["grayscale_accuracy"] == 0.31 and check["clean_accuracy"] == 0.99
    assert check["drop"] == pytest.approx(0.68)
    assert check["colour_baseline_accuracy"] == 0.96
    assert check["largest_class_share"] == pytest.approx(0.7)


def test_the_line_says_whether_the_model_needs_colour():
    needs = colour_blind_line(colour_blind(_report(0.31)))
    assert needs is not None
    assert "31.0% on grayscale" in needs and "colour statistics alone: 96.0%" in needs
    assert "(99.0% in colour, 68.0 points lost)" in needs
    assert needs.endswith("The model depends on colour.")
    blind = colour_blind_line(colour_blind(_report(0.95)))
    assert blind is not None and blind.endswith("The model does not need colour.")
    better = colour_blind_line(colour_blind(_report(0.995)))
    assert better is not None and "0.5 points gained" in better
    # 5 points is the tolerance for every shift; 6 is over it
    over = colour_blind_line(colour_blind(_report(0.93)))
    assert over is not None and over.endswith("depends on colour.")


@pytest.mark.parametrize(
    "report",
    [
        {},
        {"robustness": None, "baselines": {"colour_stats": {"accuracy": 0.9}}},
        {"robustness": {"clean": {"accuracy": 0.9}, "shifts": "x"}, "baselines": []},
        {"robustness": {"clean": {}, "shifts": [{"kind": "grayscale", "accuracy": 0.5}]}},
    ],
)
def test_a_report_without_the_numbers_has_no_check(report):
    assert colour_blind(report) is None and colour_blind_line(None) is None


def test_the_registry_page_shows_the_line_with_the_caveats():
    from registry.report import report_sections
    from tests.helpers import training_report

    report = training_report()
    assert report_sections(report)["colour_blind"] is None  # no robustness table
    report["robustness"] = _report(0.5)["robustness"]
    line = report_sections(report)["colour_blind"]
    assert line.startswith("Colour-blind check: 50.0% on grayscale")
