"""docs/benchmarks.md holds one section per benchmark; each run rewrites only its own.

docs/benchmarks.json likewise: the inference benchmark's figures are its top level (they
came first), every other benchmark's sit under a key of its own (JSON_SECTIONS).
"""

import json
from pathlib import Path
from typing import Any

JSON_SECTIONS = ("pages", "load")
TITLE = "# Benchmarks\n\nEach section is written by the command it names; rerun it to refresh it.\n"


def _markers(key: str) -> tuple[str, str]:
    return f"<!-- begin {key} -->", f"<!-- end {key} -->"


def section_write(path: Path, key: str, markdown: str) -> None:
    """Replace the section between ``key``'s markers (appended when missing), keeping the
    other benchmarks' sections as they are."""
    begin, end = _markers(key)
    block = f"{begin}\n{markdown.strip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else TITLE
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _json_read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _json_write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def json_section_write(path: Path, key: str, value: Any) -> None:
    """Replace one benchmark's figures (``key`` in JSON_SECTIONS), keeping the rest."""
    _json_write(path, {**_json_read(path), key: value})


def json_top_write(path: Path, figures: dict[str, Any]) -> None:
    """Replace the inference figures (the top level), keeping the other benchmarks' keys."""
    kept = {key: value for key, value in _json_read(path).items() if key in JSON_SECTIONS}
    _json_write(path, {**figures, **kept})


def percentile(values: list[float], q: float) -> float:
    """The measured value at the q-th percentile (0-100), nearest rank: never interpolated."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]
