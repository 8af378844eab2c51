"""Accuracy on the untouched test split under controlled colour and stain shifts.

Each condition changes every test image the same stated way (HED jitter draws per-image
amounts from a seeded generator, so it too is repeatable); the model is scored on the
shifted copies with the same metrics as on the originals. A model that learnt the stain
instead of the cells loses most of its accuracy here while a cell-shape model holds up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training import stain


@dataclass(frozen=True)
class Shift:
    kind: str  # hue | saturation | brightness | hed | grayscale
    strength: float

    @property
    def label(self) -> str:
        return {
            "hue": f"hue shift {self.strength:+.2f} turn ({self.strength * 360:+.0f} deg)",
            "saturation": f"saturation x{self.strength:g}",
            "brightness": f"brightness x{self.strength:g}",
            "hed": f"HED stain jitter sigma {self.strength:g}",
            "grayscale": "grayscale",
        }[self.kind]


#: The conditions in every report. HED sigma 0.05 / 0.2 are Tellez et al.'s "light" and
#: "strong" augmentation ranges; the others are plausible lab-to-lab differences.
SHIFTS: tuple[Shift, ...] = (
    Shift("hue", 0.04),
    Shift("hue", 0.08),
    Shift("hue", 0.16),
    Shift("saturation", 0.5),
    Shift("saturation", 1.5),
    Shift("brightness", 0.8),
    Shift("brightness", 1.2),
    Shift("hed", 0.05),
    Shift("hed", 0.1),
    Shift("hed", 0.2),
    Shift("grayscale", 1.0),
)


def apply_shift(images: np.ndarray, shift: Shift, seed: int = 0) -> np.ndarray:
    """A shifted uint8 copy of a uint8 (N, H, W, 3) batch."""
    import tensorflow as tf

    x = tf.constant(np.asarray(images), tf.float32)
    if shift.kind == "hue":
        out = stain.hue_shift(x, shift.strength)
    elif shift.kind == "saturation":
        out = stain.saturation_scale(x, shift.strength)
    elif shift.kind == "brightness":
        out = stain.brightness_scale(x, shift.strength)
    elif shift.kind == "grayscale":
        out = stain.grayscale(x) if shift.strength else x
    elif shift.kind == "hed":
        rng = np.random.default_rng(seed)
        s = shift.strength
        alpha = rng.uniform(1 - s, 1 + s, (len(images), 1, 1, 3)).astype(np.float32)
        beta = rng.uniform(-s, s, (len(images), 1, 1, 3)).astype(np.float32)
        out = stain.hed_jitter(x, alpha, beta)
    else:
        raise ValueError(f"unknown shift {shift.kind!r}")
    return np.asarray(tf.cast(tf.round(out), tf.uint8))


def robustness(
    predict_fn,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    seed: int = 0,
    shifts: tuple[Shift, ...] = SHIFTS,
    chunk: int = 256,
    flag_fn=None,
) -> dict:
    """Accuracy and macro F1 per shift; ``predict_fn(uint8 batch) -> probabilities``.

    With ``flag_fn(uint8 batch) -> bool array`` (the out-of-scope guard) each row also
    has the fraction flagged and the accuracy on the images not flagged: what a
    clinician would be shown after such a shift.
    """
    from sklearn.metrics import f1_score

    def score(result):
        pred, flags = result
        m: dict[str, float | None] = {
            "accuracy": float((pred == y_test).mean()) if len(y_test) else 0.0,
            "macro_f1": float(f1_score(y_test, pred, average="macro", zero_division=0)),
        }
        if flags is not None:
            kept = ~flags
            m["out_of_scope"] = float(flags.mean()) if len(flags) else 0.0
            m["accuracy_in_scope"] = (
                float((pred[kept] == y_test[kept]).mean()) if kept.any() else None
            )
        return m

    def predictions(shift: Shift | None):
        out, flags = [], []
        for i in range(0, len(x_test), chunk):
            part = x_test[i : i + chunk]
            # fold the chunk index in so HED draws do not repeat chunk to chunk
            shifted = part if shift is None else apply_shift(part, shift, seed + i)
            out.append(np.asarray(predict_fn(shifted)).argmax(axis=1))
            if flag_fn is not None:
                flags.append(np.asarray(flag_fn(shifted), bool))
        if not out:
            return np.zeros(0, int), None if flag_fn is None else np.zeros(0, bool)
        return np.concatenate(out), None if flag_fn is None else np.concatenate(flags)

    clean = score(predictions(None))
    rows = []
    for shift in shifts:
        m = score(predictions(shift))
        rows.append(
            {
                "kind": shift.kind,
                "strength": shift.strength,
                "label": shift.label,
                **m,
                "accuracy_drop": clean["accuracy"] - m["accuracy"],
            }
        )
    worst = min(rows, key=lambda r: r["accuracy"]) if rows else None
    return {
        "seed": seed,
        "clean": clean,
        "shifts": rows,
        "worst": None if worst is None else worst["label"],
    }
