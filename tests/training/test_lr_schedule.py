"""--lr-schedule: the study's constant rate, or halving it when validation loss stalls."""

import numpy as np
import pytest

from training.train import PLATEAU_FACTOR, PLATEAU_PATIENCE, _fit_phase


def _fit(tmp_path, schedule: str, lr: float, epochs: int) -> dict:
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype(np.float32)
    y = rng.integers(0, 2, 32)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    return _fit_phase(
        model,
        data,
        data,
        lr=lr,
        epochs=epochs,
        initial_epoch=0,
        cw=None,
        run_dir=tmp_path,
        patience=100,
        append=False,
        verbose=0,
        lr_schedule=schedule,
    )


def test_plateau_halves_the_rate_once_validation_loss_stops_falling(tmp_path):
    # A rate too small to move the loss: every epoch after the first is a stall.
    lr = 1e-12
    history = _fit(tmp_path, "plateau", lr, epochs=PLATEAU_PATIENCE + 2)
    rates = history["learning_rate"]
    assert rates[:PLATEAU_PATIENCE] == pytest.approx([lr] * PLATEAU_PATIENCE)
    assert rates[-1] == pytest.approx(lr * PLATEAU_FACTOR)


def test_constant_keeps_the_study_s_rate(tmp_path):
    lr = 1e-12
    history = _fit(tmp_path, "constant", lr, epochs=PLATEAU_PATIENCE + 2)
    assert history.get("learning_rate", [lr])[-1] == pytest.approx(lr)


def test_the_cli_passes_the_schedule_on():
    from training.cli import _config, build_parser

    args = build_parser().parse_args(["train", "data", "--lr-schedule", "plateau"])
    assert _config(args, "cml1").lr_schedule == "plateau"
    default = build_parser().parse_args(["train", "data"])
    assert _config(default, "cml1").lr_schedule == "constant"
