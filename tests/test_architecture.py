"""The import rules of docs/architecture.md, checked on the source: every import
statement, including those inside functions, of every module of the project's packages."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "architecture.md"
DJANGO_FREE = ("runtime", "training")
# Module kinds that the lower kinds (models, selectors, services) must never import.
UPPER_KINDS = {"presenters", "views", "api", "tasks", "admin"}
LOWER_KINDS = {"models", "selectors", "services"}


def layers() -> list[str]:
    """The packages of the doc's ```layers block, lowest first."""
    block = re.search(r"```layers\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert block, "docs/architecture.md has no ```layers block"
    names = [line.split()[0] for line in block.group(1).splitlines() if line.strip()]
    return list(reversed(names))


def modules(package: str) -> dict[str, Path]:
    root = REPO / package
    found = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imported_names(module: str, path: Path) -> set[str]:
    """Every module name the file imports, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def project_imports() -> dict[str, set[str]]:
    """{module: project modules and packages it imports} over every layer's package."""
    packages = [p for p in layers() if (REPO / p).is_dir()]
    graph = {}
    for package in packages:
        for module, path in modules(package).items():
            graph[module] = {
                name for name in imported_names(module, path) if name.split(".")[0] in packages
            }
    return graph


def kind(module: str) -> str | None:
    """models, selectors, services, presenters, views, api, tasks or admin; else None."""
    for part in module.split(".")[1:]:
        if part in UPPER_KINDS | LOWER_KINDS:
            return part
    return None


def test_the_doc_lists_every_package_of_the_project_once():
    listed = layers()
    assert len(listed) == len(set(listed))
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"tests"}
    assert packages <= set(listed), f"not in docs/architecture.md: {packages - set(listed)}"


def test_every_import_points_down_the_layers():
    rank = {package: i for i, package in enumerate(layers())}
    upward = [
        f"{module} imports {name}"
        for module, names in project_imports().items()
        for name in names
        if rank[name.split(".")[0]] > rank[module.split(".")[0]]
    ]
    assert not upward, "imports against docs/architecture.md:\n" + "\n".join(sorted(upward))


def test_no_package_imports_one_that_imports_it_back():
    edges: dict[str, set[str]] = defaultdict(set)
    for module, names in project_imports().items():
        for name in names:
            if name.split(".")[0] != module.split(".")[0]:
                edges[module.split(".")[0]].add(name.split(".")[0])
    try:
        TopologicalSorter(edges).prepare()
    except CycleError as exc:
        raise AssertionError(f"packages import each other in a circle: {exc.args[1]}") from exc


def test_models_selectors_and_services_never_import_pages_tasks_or_admin():
    wrong = [
        f"{module} imports {name}"
        for module, names in project_imports().items()
        if kind(module) in LOWER_KINDS
        for name in names
        if kind(name) in UPPER_KINDS
    ]
    assert not wrong, "\n".join(sorted(wrong))


def test_runtime_and_training_never_import_django_not_even_lazily():
    found = [
        f"{module} imports {name}"
        for package in DJANGO_FREE
        if (REPO / package).is_dir()
        for module, path in modules(package).items()
        for name in imported_names(module, path)
        if name.split(".")[0] in {"django", "rest_framework", "celery"}
    ]
    assert not found, found


def test_the_checks_see_an_import_inside_a_function(tmp_path):
    source = tmp_path / "views.py"
    source.write_text("def f():\n    from reviews.selectors import x\n", encoding="utf-8")
    assert "reviews.selectors.x" in imported_names("cases.views", source)
    assert kind("clinic.api.views") == "api" and kind("inference.services.sweep") == "services"
