"""Fixtures for the training tests: a generated data folder and a tiny trained run."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    """Five classes x 12 generated fields at 48 px, written like a real data folder."""
    from training.synth import write_dataset

    return write_dataset(tmp_path_factory.mktemp("synthetic"), per_class=12, size=48, seed=3)


@pytest.fixture(scope="session")
def tiny_run(synthetic_dir, tmp_path_factory):
    """One real (tiny) training run: CML-1 at 32 px for 2 epochs, packaged.

    About ten seconds on a CPU, so every test that uses it is marked slow.
    """
    from training.train import TrainConfig, run_training

    out = tmp_path_factory.mktemp("runs")
    cfg = TrainConfig(
        data_dir=str(synthetic_dir),
        arch="cml1",
        img_size=32,
        epochs=2,
        patience=2,
        batch_size=16,
        seed=1,
        out=str(out),
        name="tiny",
        version="0.1",
        int8=True,
    )
    return run_training(cfg)
