"""Temperature scaling, the one calibration training fits and every prediction applies."""

import numpy as np
import pytest

from runtime.calibration import apply_temperature


def test_temperature_softens_the_probabilities_and_keeps_their_order():
    p = np.array([[0.7, 0.2, 0.1]])
    soft = apply_temperature(p, 2.0)
    assert soft.sum() == pytest.approx(1.0)
    assert soft[0, 0] < 0.7 and list(np.argsort(soft[0])) == list(np.argsort(p[0]))
    assert apply_temperature(p, 1.0) == pytest.approx(p)
