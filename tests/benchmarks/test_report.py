"""Each benchmark rewrites only its own section of docs/benchmarks.md."""

import json

from benchmarks.report import json_section_write, json_top_write, section_write


def test_a_rerun_replaces_only_its_own_section(tmp_path):
    doc = tmp_path / "benchmarks.md"
    section_write(doc, "inference", "## Inference\n\nold figures")
    section_write(doc, "pages", "## Pages\n\np95 120 ms")
    section_write(doc, "inference", "## Inference\n\nnew figures")

    text = doc.read_text()
    assert "new figures" in text
    assert "old figures" not in text
    assert "p95 120 ms" in text
    assert text.index("## Inference") < text.index("## Pages")  # places are kept


def test_a_new_section_is_appended_after_a_hand_written_page(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nwritten by hand\n")
    section_write(doc, "load", "## Load\n\n10 images/s")

    assert doc.read_text().startswith("# Benchmarks\n\nwritten by hand\n")
    assert "<!-- begin load -->\n## Load\n\n10 images/s\n<!-- end load -->" in doc.read_text()


def test_each_benchmark_keeps_the_others_figures_in_the_json(tmp_path):
    figures = tmp_path / "benchmarks.json"
    json_top_write(figures, {"models": ["old"]})
    json_section_write(figures, "pages", {"after": {"rows": [1]}})
    json_top_write(figures, {"models": ["new"]})
    json_section_write(figures, "pages", {"after": {"rows": [2]}})

    assert json.loads(figures.read_text()) == {"models": ["new"], "pages": {"after": {"rows": [2]}}}
