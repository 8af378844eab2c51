"""runtime/ and training/ never import Django, and runtime/ never imports training/: they
must run from a shell, a notebook, a benchmark or a worker alone."""

import pytest

from tests.helpers import fresh_python

# Every module of both packages, found afresh in the child, so a new module is covered
# without editing this test. runtime goes first: training may import it, not the reverse.
CHECK = """
import importlib, pkgutil, sys

def import_all(package):
    root = importlib.import_module(package)
    names = [package] + [
        m.name for m in pkgutil.walk_packages(root.__path__, package + ".")
    ]
    for name in names:
        importlib.import_module(name)
    return names

def loaded(prefix):
    return sorted(m for m in sys.modules if m == prefix or m.startswith(prefix + "."))

runtime = import_all("runtime")
print("RUNTIME:" + ",".join(runtime))
print("TRAINING_FROM_RUNTIME:" + ",".join(loaded("training")))
training = import_all("training")
print("TRAINING:" + ",".join(training))
print("DJANGO:" + ",".join(loaded("django")))
"""


@pytest.mark.slow
def test_importing_every_runtime_and_training_module_never_imports_django():
    out = fresh_python(CHECK, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict(line.split(":", 1) for line in out.stdout.splitlines() if ":" in line)
    # The discovery itself works: the modules named here are among those it imported.
    assert {"runtime.artifact", "runtime.predictor"} <= set(lines["RUNTIME"].split(","))
    assert {"training.cli", "training.train"} <= set(lines["TRAINING"].split(","))
    assert lines["TRAINING_FROM_RUNTIME"] == "", lines["TRAINING_FROM_RUNTIME"]
    assert lines["DJANGO"] == "", lines["DJANGO"]
