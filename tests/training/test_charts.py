"""The report's SVG figures: well formed, labels escaped, files that stand alone."""

from xml.etree import ElementTree

import pytest

from training import charts

SVG = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ElementTree.Element:
    root = ElementTree.fromstring(svg)  # noqa: S314 (our own output, not untrusted)
    assert root.tag == f"{SVG}svg"
    return root


def test_the_confusion_matrix_shades_each_row_and_prints_every_count():
    svg = charts.confusion_matrix_svg([[3, 1], [0, 0]], ["ALL", "<AML>"])
    root = _parse(svg)
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert {"3", "1", "0"} <= set(texts) and "<AML>" in texts  # escaped, then parsed back
    opacities = [
        float(opacity) for r in root.iter(f"{SVG}rect") if (opacity := r.get("fill-opacity"))
    ]
    assert opacities == pytest.approx([0.75 * 0.85, 0.25 * 0.85, 0.0, 0.0], abs=1e-3)


def test_the_curves_mark_the_kept_epoch_in_both_panels():
    history = {"accuracy": [0.5, 0.7, 0.8], "val_accuracy": [0.4, 0.6, 0.5]}
    history |= {"loss": [1.0, 0.6, 0.4], "val_loss": [1.1, 0.7, 0.9]}
    root = _parse(charts.curves_svg(history, best_epoch=2))
    assert len(root.findall(f".//{SVG}polyline")) == 4
    assert sum("kept (epoch 2)" in (t.text or "") for t in root.iter(f"{SVG}text")) == 2
    assert charts.curves_svg({}) == ""


def test_bars_draw_one_bar_per_value_and_the_reference_line():
    rows = [
        {"arch": "cml1", "accuracy": 0.9, "macro_f1": 0.85},
        {"arch": "mobilenet", "accuracy": 0.8, "macro_f1": 0.7},
    ]
    baselines = {"colour_stats": {"accuracy": 0.88}, "thumbnail_8x8": {"accuracy": 0.6}}
    root = _parse(charts.comparison_svg(rows, baselines))
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert {"0.900", "0.850", "0.800", "0.700"} <= set(texts)  # each bar's value
    assert "best baseline (colour_stats) 0.880" in texts
    assert charts.robustness_svg(None) == ""


def test_a_saved_figure_carries_its_own_styles(tmp_path):
    svg = charts.reliability_svg(
        {"before": [{"confidence": 0.9, "accuracy": 0.7, "count": 5}]}, title="Reliability"
    )
    path = charts.save_svg(svg, tmp_path / "reliability.svg")
    root = _parse(path.read_text())
    style = root.find(f"{SVG}style")
    assert style is not None and style.text is not None
    assert ".chart-tick" in style.text


def test_the_tradeoff_chart_places_each_model_by_clean_and_worst_accuracy():
    svg = charts.tradeoff_svg([("<robust>", 0.99, 0.96), ("colour", 0.99, 0.25)], tolerance=0.05)
    root = _parse(svg)
    dots = [c for c in root.iter(f"{SVG}circle") if c.get("r") == "4"]
    # one dot in the plot and one in the legend per model
    plotted = [(float(c.get("cx", "")), float(c.get("cy", ""))) for c in dots[::2]]
    assert plotted[0][0] == pytest.approx(plotted[1][0])  # same clean accuracy
    assert plotted[0][1] < plotted[1][1]  # the robust one higher (SVG y grows down)
    texts = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert "<robust> (99.0%, 96.0%)" in texts and "0.2" in texts  # axis from 0.2 to 1
    assert charts.tradeoff_svg([]) == ""


def test_tradeoff_runs_tabulates_each_run_and_given_points(tmp_path):
    import json

    from training.compare import tradeoff_runs

    run = tmp_path / "run"
    run.mkdir()
    shifts = [
        {"label": "grayscale", "accuracy": 0.9},
        {"label": "hue +58", "accuracy": 0.5},
    ]
    report = {
        "input_size": 64,
        "config": {"stain_normalize": None},
        "color_augmentation": {"recipe": "strong"},
        "training": {"epochs_run": 7},
        "robustness": {"clean": {"accuracy": 0.95}, "shifts": shifts},
    }
    (run / "report.json").write_text(json.dumps(report))
    out = tradeoff_runs([run], tmp_path / "t", [("A", 0.991, 0.255)])
    rows = json.loads((out / "tradeoff.json").read_text())
    assert [(r["label"], r["worst"]) for r in rows] == [("run", 0.5), ("A", 0.255)]
    assert rows[0]["worst_label"] == "hue +58" and rows[0]["recipe"] == "strong"
    md = (out / "tradeoff.md").read_text()
    assert "| run | 64 | strong | 7 | 95.0% | 50.0% | hue +58 | no |" in md
    _parse((out / "tradeoff.svg").read_text())
