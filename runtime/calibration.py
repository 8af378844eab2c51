"""Temperature scaling: the one calibration that training fits and every prediction applies.

Fitting the temperature is offline work (``training.evaluate.fit_temperature``); applying
it is here, so the worker and the evaluation code cannot compute it two ways.
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-12


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature scaling of softmax outputs: softmax(log(p) / T), row by row.

    log(p) equals the logits up to a per-row constant, which softmax ignores, so this
    is exactly dividing the logits by T, computed from probabilities alone.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if temperature == 1.0:
        return p / p.sum(axis=1, keepdims=True)
    z = np.log(np.clip(p, _EPS, 1.0)) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
