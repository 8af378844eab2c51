"""training/ and the predictor core never import Django: they must run from a shell, a
notebook, a benchmark or a worker alone."""

import subprocess
import sys

from tests.training.conftest import REPO_ROOT

MODULES = [
    "training",
    "training.__main__",
    "training.cli",
    "training.preprocess",
    "training.data",
    "training.synth",
    "training.augment",
    "training.architectures",
    "training.baselines",
    "training.evaluate",
    "training.figures",
    "training.report",
    "training.package",
    "training.train",
    "training.compare",
    "training.evaluate_artifact",
    "inference.predictor",
    "inference.heatmaps",
    "inference.evaluation",
]


def test_importing_training_and_the_predictor_core_never_imports_django():
    code = (
        "import importlib, sys\n"
        f"for m in {MODULES!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'))\n"
        "print('DJANGO:' + ','.join(bad))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "DJANGO:\n" in out.stdout, out.stdout


def test_cli_help_is_fast_and_django_free():
    code = (
        "import sys\n"
        "from training.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert not any(m.startswith('django') for m in sys.modules)\n"
        "assert 'tensorflow' not in sys.modules, 'help should not load TensorFlow'\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    for command in ("train", "evaluate", "compare", "synth", "export-augmented", "demo-model"):
        assert command in out.stdout
