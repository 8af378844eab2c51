"""docs/benchmarks.md holds one section per benchmark; each run rewrites only its own."""

from pathlib import Path

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
