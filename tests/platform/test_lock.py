"""The lock files pin what pyproject.toml asks for, every package with its hashes."""

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()


def locked(name: str) -> dict[str, str]:
    """{package: version} of a lock file, asserting that every pin carries a hash."""
    text = (ROOT / "requirements" / name).read_text(encoding="utf-8")
    pins = {}
    for block in re.split(r"\n(?=\S)", text):
        match = PIN.match(block)
        if match:
            assert "--hash=sha256:" in block, f"{match.group(1)} has no hash in {name}"
            pins[_normal(match.group(1))] = match.group(2).split(";")[0].rstrip(" \\")
    return pins


def declared(*extras: str) -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = [
        *project["dependencies"],
        *(d for e in extras for d in project["optional-dependencies"][e]),
    ]
    return {_normal(d.split("==")[0]): d.split("==")[1] for d in wanted}


def test_every_direct_dependency_is_pinned_in_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for dep in [*project["dependencies"], *project["optional-dependencies"]["dev"]]:
        assert "==" in dep, f"{dep}: pin it, then run make lock"


def test_the_dev_lock_holds_exactly_what_pyproject_pins():
    pins = locked("dev.txt")
    for name, version in declared("dev", "web", "worker", "heatmaps").items():
        assert pins.get(name) == version, f"{name}=={version}: run make lock"


@pytest.mark.parametrize("role", ["web", "worker", "heatmaps"])
def test_each_roles_lock_holds_its_extra_at_the_dev_locks_versions_without_dev_tools(role):
    pins, dev = locked(f"{role}.txt"), locked("dev.txt")
    for name, version in declared(role).items():
        assert pins.get(name) == version, f"{name}=={version} in {role}.txt: run make lock"
    assert all(dev[name] == version for name, version in pins.items())
    # Some dev tools are also what a production package needs (PyYAML), so check the tools.
    assert not {"pytest", "ruff", "uv", "factory-boy"} & pins.keys()


def test_only_the_heatmap_workers_image_carries_tensorflow():
    for role in ("web", "worker"):
        assert (
            not {"tensorflow", "tensorflow-cpu", "keras", "tf2onnx"} & locked(f"{role}.txt").keys()
        ), role
    assert {"tensorflow-cpu", "keras", "tf2onnx", "onnxruntime"} <= locked("heatmaps.txt").keys()
    assert "onnxruntime" in locked("worker.txt")
