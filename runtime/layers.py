"""Keras layers of packaged models (stain normalisation, grayscale input) and of the
guard's graph (input statistics).

Importing this module registers them, which a saved model that contains one needs in
order to load (``runtime.artifact.load_packaged`` does it). The constants here are the
ones both the layers and training's numpy references (``training.stain``) compute with,
so the two cannot disagree. The stain layers take and return float 0-255 RGB;
:class:`InputStatistics` (the guard's input-level checks) takes 0-255 RGB.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from runtime.guard import INPUT_STATISTICS, STRUCTURE_FLOOR

# --- grayscale input (de-colouring) ------------------------------------------------------

#: ITU-R 601 luma weights, as ``tf.image.rgb_to_grayscale`` and the robustness table's
#: grayscale shift use.
LUMA = (0.2989, 0.5870, 0.1140)


@keras.saving.register_keras_serializable(package="leukweb")
class Grayscale(keras.layers.Layer):
    """ITU-R 601 luma copied into all three channels (0-255 RGB in and out).

    First inside a packaged model (``--stain-normalize grayscale``) it hides colour from
    the network: a grayscale image and its colour original give the same prediction, and
    hue, saturation or stain changes reach the network only through the luma they move.
    Three channels out, so every architecture takes it unchanged. One 1x1 matrix product:
    converts to ONNX exactly.
    """

    def call(self, x):
        luma = tf.constant(np.array(LUMA, np.float32).reshape(3, 1))
        grey = tf.linalg.matmul(tf.cast(x, tf.float32), luma)
        return tf.concat([grey, grey, grey], axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape


# --- Reinhard normalisation (l-alpha-beta space, Reinhard et al. 2001) -------------------

_LMS_FROM_RGB = np.array(
    [[0.3811, 0.5783, 0.0402], [0.1967, 0.7244, 0.0782], [0.0241, 0.1288, 0.8444]]
)
_LAB_FROM_LOGLMS = np.diag([1 / np.sqrt(3), 1 / np.sqrt(6), 1 / np.sqrt(2)]) @ np.array(
    [[1.0, 1.0, 1.0], [1.0, 1.0, -2.0], [1.0, -1.0, 0.0]]
)
# Row-vector forms (pixels are rows): lab = log10(rgb' @ LMS_ROWS) @ LAB_ROWS,
# with rgb' = (I + 1) / 256.
LMS_ROWS = _LMS_FROM_RGB.T
LAB_ROWS = _LAB_FROM_LOGLMS.T
LAB_ROWS_INV = np.linalg.inv(LAB_ROWS)
LMS_ROWS_INV = np.linalg.inv(LMS_ROWS)
STD_FLOOR = 1e-4  # a flat image has no spread to match: leave its channel where it is


@keras.saving.register_keras_serializable(package="leukweb")
class ReinhardNormalization(keras.layers.Layer):
    """Match each image's l-alpha-beta mean and std to a stored reference (0-255 RGB in/out).

    Lives inside the packaged model, so inference normalises exactly as training did.
    """

    def __init__(self, target_mean, target_std, **kwargs):
        super().__init__(**kwargs)
        self.target_mean = [float(v) for v in target_mean]
        self.target_std = [float(v) for v in target_std]

    def call(self, x):
        x = tf.cast(x, tf.float32)
        lms = tf.linalg.matmul((x + 1.0) / 256.0, tf.constant(LMS_ROWS, tf.float32))
        lab = tf.linalg.matmul(tf.math.log(lms) / np.log(10.0), tf.constant(LAB_ROWS, tf.float32))
        m = tf.reduce_mean(lab, axis=[-3, -2], keepdims=True)
        s = tf.math.reduce_std(lab, axis=[-3, -2], keepdims=True)
        lab = (lab - m) / tf.maximum(s, STD_FLOOR) * tf.constant(self.target_std) + tf.constant(
            self.target_mean
        )
        lms = tf.pow(10.0, tf.linalg.matmul(lab, tf.constant(LAB_ROWS_INV, tf.float32)))
        rgb = tf.linalg.matmul(lms, tf.constant(LMS_ROWS_INV, tf.float32)) * 256.0 - 1.0
        return tf.clip_by_value(rgb, 0.0, 255.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "target_mean": self.target_mean,
            "target_std": self.target_std,
        }


# --- Macenko normalisation (Macenko et al. 2009) -----------------------------------------

MACENKO_BETA = 0.15  # optical density below this in any channel is background, not stain
# Near-black pixels (OD above this, I < ~12) are not stain either: the affine
# augmentation's black fill would otherwise dominate the estimate.
MACENKO_OD_MAX = 3.0
MACENKO_ALPHA = 1.0  # robust extremes: the 1st and 99th percentile of the stain angle
MIN_STAIN_PIXELS = 16  # fewer stained pixels than this: nothing to estimate, leave as is


def _percentile(sorted_values, n, q):
    """np.percentile's linear interpolation on the first ``n`` of ascending values."""
    pos = q / 100.0 * (tf.cast(n, tf.float32) - 1.0)
    lo = tf.cast(tf.floor(pos), tf.int32)
    hi = tf.minimum(lo + 1, n - 1)
    frac = pos - tf.floor(pos)
    return tf.gather(sorted_values, lo) * (1 - frac) + tf.gather(sorted_values, hi) * frac


@keras.saving.register_keras_serializable(package="leukweb")
class MacenkoNormalization(keras.layers.Layer):
    """Re-express each image in a stored reference stain matrix and intensity (0-255 in/out).

    Per image: estimate its H and E vectors from the optical densities of stained pixels
    (the plane of the two main eigenvectors, extremes of the angle within it), unmix,
    rescale the concentrations to the reference's 99th percentiles, remix with the
    reference vectors. Images with too few stained pixels pass unchanged.
    """

    def __init__(self, stains, max_concentrations, **kwargs):
        super().__init__(**kwargs)
        self.stains = [[float(v) for v in row] for row in stains]
        self.max_concentrations = [float(v) for v in max_concentrations]

    def _one(self, image):
        od = -tf.math.log((tf.reshape(image, [-1, 3]) + 1.0) / 256.0)
        mask = tf.reduce_all((od > MACENKO_BETA) & (od < MACENKO_OD_MAX), axis=1)
        n = tf.reduce_sum(tf.cast(mask, tf.int32))

        def normalise():
            w = tf.cast(mask, tf.float32)[:, None]
            mean = tf.reduce_sum(od * w, axis=0) / tf.cast(n, tf.float32)
            centred = (od - mean) * w
            cov = tf.linalg.matmul(centred, centred, transpose_a=True)
            eig = tf.linalg.eigh(cov)[1][:, 1:3]
            eig = eig * tf.where(tf.reduce_sum(eig, axis=0) < 0, -1.0, 1.0)
            proj = tf.linalg.matmul(od, eig)
            phi = tf.math.atan2(proj[:, 1], proj[:, 0])
            phi = tf.sort(tf.where(mask, phi, np.inf))
            lo = _percentile(phi, n, MACENKO_ALPHA)
            hi = _percentile(phi, n, 100 - MACENKO_ALPHA)
            v1 = tf.linalg.matvec(eig, tf.stack([tf.cos(lo), tf.sin(lo)]))
            v2 = tf.linalg.matvec(eig, tf.stack([tf.cos(hi), tf.sin(hi)]))
            own = tf.where(v1[0] > v2[0], tf.stack([v1, v2], axis=1), tf.stack([v2, v1], axis=1))
            conc = tf.linalg.matmul(od, tf.linalg.pinv(own), transpose_b=True)
            total = tf.shape(conc)[0]
            own_max = _percentile(tf.sort(conc, axis=0), total, 99.0)
            conc = conc * (tf.constant(self.max_concentrations) / own_max)
            ref = tf.constant(self.stains, tf.float32)
            rgb = 256.0 * tf.exp(-tf.linalg.matmul(conc, ref, transpose_b=True)) - 1.0
            return tf.reshape(tf.clip_by_value(rgb, 0.0, 255.0), tf.shape(image))

        return tf.cond(n >= MIN_STAIN_PIXELS, normalise, lambda: image)

    def call(self, x):
        x = tf.cast(x, tf.float32)
        return tf.map_fn(self._one, x, fn_output_signature=tf.float32)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "stains": self.stains,
            "max_concentrations": self.max_concentrations,
        }


# --- input-level checks of the out-of-scope guard ----------------------------------------

_LAPLACIAN = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], np.float32)
#: ``dark`` counts pixels darker than this fraction of the image's mean luma: stained
#: cells and nuclei on a smear; an empty field, a solid colour or a blurred smear has
#: almost none, and the ratio does not move with the lamp's brightness.
DARK_RATIO = 0.8
DARK_FLOOR = 1e-3  # log10 of a fraction needs a floor: an image with no dark pixel


#: ``structure``: the luma is averaged over blocks of ``size // STRUCTURE_GRID`` pixels
#: (at least 1), so whatever the model's input size it is looked at on a grid of about
#: 64 x 64, where a Taleqani red cell is ~5 blocks wide: sensor noise averages out and a
#: dust speck shrinks to a block or two, while cells keep their outlines.
STRUCTURE_GRID = 64
#: A block is an edge where the luma's gradient (central differences, per block) exceeds
#: this share of the mean luma: far above sensor noise (~0.3 %) and a lamp's vignetting
#: (~1 % at the corners), below the faint outline of a red cell on a pale smear.
STRUCTURE_EDGE = 0.015


#: ``periodicity``: the lags (pixels, along rows and along columns) at which the luma's
#: Laplacian is correlated with itself. A printed picture's halftone dots photographed
#: and resized to the model's input repeat every 2-5 pixels, so their fine detail
#: correlates at one of these lags; a smear's fine detail (cell outlines, chromatin)
#: does not repeat.
PERIODICITY_LAGS = (2, 3, 4, 5)


def _periodicity_kernels() -> tuple[np.ndarray, np.ndarray]:
    """(Laplacian, Laplacian + itself shifted by each lag along each axis), both padded to
    one window so that every output covers the same pixels: (k, k, 1, 1), (k, k, 1, 2L)."""
    k = 3 + max(PERIODICITY_LAGS)
    alone = np.zeros((k, k, 1, 1), np.float32)
    alone[:3, :3, 0, 0] = _LAPLACIAN
    pairs = np.zeros((k, k, 1, 2 * len(PERIODICITY_LAGS)), np.float32)
    for i, lag in enumerate(PERIODICITY_LAGS):
        for j, (dy, dx) in enumerate(((lag, 0), (0, lag))):
            pairs[:3, :3, 0, 2 * i + j] += _LAPLACIAN
            pairs[dy : dy + 3, dx : dx + 3, 0, 2 * i + j] += _LAPLACIAN
    return alone, pairs


_PERIODICITY_ALONE, _PERIODICITY_PAIRS = _periodicity_kernels()
#: ``quarter_periodicity`` takes the correlation in each quarter of the field (2 x 2) and
#: reads the second largest: a halftone picture filling a quarter to half of a photo of
#: paper is diluted by the plain paper in a statistic over the whole field, while a
#: smear's one odd corner (a stain deposit, a lamp's glare) is outvoted.
PERIODICITY_QUARTER_RANK = 2


def structure_block(size: int) -> int:
    """The block (pixels per side) ``structure`` averages the luma over at ``size``."""
    return max(1, size // STRUCTURE_GRID)


def _laplacian(y):
    """(N, (H - 2) * W): the 3x3 Laplacian of (N, H, W) luma, VALID, row after row on the
    flattened field: entry ``i * W + j`` is centred on ``y[i + 1, j + 1]`` for j < W - 2,
    and the last two entries of each row, which wrap around to the next row, mean nothing.

    Shifts of a flattened field are contiguous slices, which ONNX Runtime copies at
    memory speed; 2-D slices of a map and one-channel convolutions cost several times
    more."""
    height, width = int(y.shape[1]), int(y.shape[2])
    # Two zeros after the last pixel: the last row's two meaningless entries read them.
    flat = tf.pad(tf.reshape(y, [-1, height * width]), [[0, 0], [0, 2]])
    length = (height - 2) * width

    def at(dy: int, dx: int):
        start = dy * width + dx
        return flat[:, start : start + length]

    return at(0, 1) + at(2, 1) + at(1, 0) + at(1, 2) - 4.0 * at(1, 1)


def _window_means(maps, rows: list[tuple[int, int]], cols: list[tuple[int, int]]):
    """(N, C, R, W) -> (N, C, len(rows), len(cols)): the mean of each window (a range of
    rows by a range of columns), as two matrix products with the windows' indicators: one
    pass over the maps, no copies of the windows."""
    height, width = int(maps.shape[2]), int(maps.shape[3])
    down = np.zeros((len(rows), height), np.float32)
    for k, (start, stop) in enumerate(rows):
        down[k, start:stop] = 1.0 / (stop - start)
    across = np.zeros((width, len(cols)), np.float32)
    for k, (start, stop) in enumerate(cols):
        across[start:stop, k] = 1.0 / (stop - start)
    # Plain 2-D products: TensorFlow 2.21's batched matmul crashed (SIGSEGV) on a 4-D
    # tensor times a constant matrix. The transposed operand is small by then.
    channels = int(maps.shape[1])
    by_cols = tf.reshape(
        tf.linalg.matmul(tf.reshape(maps, [-1, width]), across), [-1, height, len(cols)]
    )
    by_rows = tf.linalg.matmul(tf.reshape(tf.transpose(by_cols, [0, 2, 1]), [-1, height]), down.T)
    means = tf.reshape(by_rows, [-1, channels, len(cols), len(rows)])
    return tf.transpose(means, [0, 1, 3, 2])


class _Windows:
    """Row and column windows of one window-means pass, each listed once: a statistic asks
    for a window by its rows and columns and reads its mean at the returned index."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, int]] = []
        self.cols: list[tuple[int, int]] = []

    def index(self, rows: tuple[int, int], cols: tuple[int, int]) -> tuple[int, int]:
        for wanted, listed in ((rows, self.rows), (cols, self.cols)):
            if wanted not in listed:
                listed.append(wanted)
        return self.rows.index(rows), self.cols.index(cols)

    def flat(self, channel: int, at: tuple[int, int]) -> int:
        """Where a window's mean of ``channel`` sits in the flattened means."""
        return (channel * len(self.rows) + at[0]) * len(self.cols) + at[1]


def _laplacian_statistics(lap, height: int, width: int, names) -> dict:
    """(N, 1) per named statistic of the Laplacian from :func:`_laplacian` of an H x W
    field: ``focus``'s variance of the Laplacian, ``periodicity`` (the whole field) and
    ``quarter_periodicity``. All of them read two passes of window means: one over the
    Laplacian ``a`` and ``a^2``, one over the products ``ab`` with ``b`` the Laplacian
    shifted by each lag; a pass of matrix products costs about what one statistic's own
    pass did.

    As the numpy reference correlates a padded k x k window (k = 3 + the largest lag), a
    periodicity reads ``a`` at the positions whose window fits, and ``b``, for each lag
    along each axis, is it shifted by that lag (on the flattened field, by ``lag`` or by
    ``lag`` rows). Over each window (a quarter's own positions, or the whole field's):
    var(a + b) = E[a^2] + E[b^2] + 2 E[ab] - (E[a] + E[b])^2, as if the quarter were cut
    out and filtered alone. E[b] and E[b^2] are the means of ``a`` and ``a^2`` over the
    window shifted by the lag."""
    lag_max = max(PERIODICITY_LAGS)
    rows = height - 2 - lag_max  # products at (i, j), i < rows, j < width: windows pick j
    length = rows * width
    lags = [(lag, 0) for lag in PERIODICITY_LAGS] + [(0, lag) for lag in PERIODICITY_LAGS]
    moments, crosses = _Windows(), _Windows()
    focus = moments.index((0, height - 2), (0, width - 2))
    # Per periodicity: its windows' first rows, first columns and their size.
    layouts: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, int]]] = {}
    if "periodicity" in names:
        layouts["periodicity"] = ((0,), (0,), (rows, width - 2 - lag_max))
    if "quarter_periodicity" in names:
        # Each quarter (H // 2 by W // 2 pixels) holds its own filter outputs only.
        down, across = height // 2, width // 2
        layouts["quarter_periodicity"] = (
            (0, down),
            (0, across),
            (down - lag_max - 2, across - lag_max - 2),
        )
    # For each periodicity, window by window: where E[ab] of each lag sits, and E[a],
    # E[a^2] unshifted and shifted by each lag.
    picks = {}
    for name, (row_starts, col_starts, size) in layouts.items():
        cross, base, shifted = [], [], []
        for r in row_starts:
            for c in col_starts:
                window = ((r, r + size[0]), (c, c + size[1]))
                cross.append(crosses.index(*window))
                base.append(moments.index(*window))
                shifted.append(
                    [moments.index((r + dy, r + dy + size[0]), (c + dx, c + dx + size[1]))
                     for dy, dx in lags]
                )  # fmt: skip
        picks[name] = (cross, base, shifted)

    field = tf.reshape(lap, [-1, 1, height - 2, width])
    first = _window_means(tf.concat([field, tf.square(field)], axis=1), moments.rows, moments.cols)
    first = tf.reshape(first, [-1, 2 * len(moments.rows) * len(moments.cols)])

    def taken(values, index):
        return tf.gather(values, np.asarray(index), axis=1)

    out = {}
    if "focus" in names:
        mean, mean_square = (taken(first, [moments.flat(k, focus)]) for k in (0, 1))
        out["focus"] = mean_square - tf.square(mean)
    if not layouts:
        return out
    alone = tf.reshape(lap[:, :length], [-1, 1, length])
    starts = [dy * width + dx for dy, dx in lags]  # one slice each: two cost two copies
    shifted_maps = tf.concat(
        [tf.reshape(lap[:, s : s + length], [-1, 1, length]) for s in starts], axis=1
    )
    products = tf.reshape(alone * shifted_maps, [-1, len(lags), rows, width])
    second = _window_means(products, crosses.rows, crosses.cols)
    second = tf.reshape(second, [-1, len(lags) * len(crosses.rows) * len(crosses.cols)])
    for name, (cross, base, shifted) in picks.items():
        # (N, lags, windows) for E[ab], E[b], E[b^2]; (N, 1, windows) for E[a], E[a^2].
        def grid(values, index):
            return tf.reshape(taken(values, index), [-1, len(index), len(index[0])])

        cross_ab = grid(second, [[crosses.flat(k, w) for w in cross] for k in range(len(lags))])
        mean_a = grid(first, [[moments.flat(0, w) for w in base]])
        square_a = grid(first, [[moments.flat(1, w) for w in base]])
        mean_b = grid(first, [[moments.flat(0, s[k]) for s in shifted] for k in range(len(lags))])
        square_b = grid(first, [[moments.flat(1, s[k]) for s in shifted] for k in range(len(lags))])
        var_a = square_a - tf.square(mean_a)
        var_pairs = square_a + square_b + 2.0 * cross_ab - tf.square(mean_a + mean_b)
        ac = var_pairs / (2.0 * var_a + 1.0) - 1.0  # (N, lags, windows)
        per_window = tf.reduce_max(ac, axis=1)  # (N, windows)
        if name == "periodicity":
            out[name] = per_window
        else:
            top = tf.math.top_k(per_window, PERIODICITY_QUARTER_RANK).values
            out[name] = tf.reduce_min(top, axis=-1, keepdims=True)
    return out


def _structure_share(y, mean_y):
    """(N, 1): the share of each (N, H, W) luma field that is an edge at the scale of
    cells, with ``mean_y`` (N, 1) the field's mean luma."""
    block = structure_block(int(y.shape[1]))
    down, across = int(y.shape[1]) // block, int(y.shape[2]) // block
    cropped = y[:, : down * block, : across * block]
    pooled = tf.reduce_mean(tf.reshape(cropped, [-1, down, block, across, block]), axis=[2, 4])
    gx = (pooled[:, 1:-1, 2:] - pooled[:, 1:-1, :-2]) / 2.0
    gy = (pooled[:, 2:, 1:-1] - pooled[:, :-2, 1:-1]) / 2.0
    # Squared magnitude against the squared bound: no square root in the graph.
    bound = tf.expand_dims(tf.square(STRUCTURE_EDGE * (mean_y + 1.0)), -1)  # (N, 1, 1)
    edge = tf.cast(tf.square(gx) + tf.square(gy) > bound, tf.float32)
    return tf.expand_dims(tf.reduce_mean(edge, axis=[1, 2]), -1)


@keras.saving.register_keras_serializable(package="leukweb")
class InputStatistics(keras.layers.Layer):
    """Numbers per 0-255 RGB image that say whether it looks like a focused smear, those
    named in ``statistics`` in that order (by default :data:`runtime.guard.INPUT_STATISTICS`).

    ``focus``: log10 of the variance of the luma's 3x3 Laplacian over the luma's own
    variance (each plus 1): blur removes fine detail relative to the overall contrast,
    and the ratio does not move with a brighter lamp; noise and a screen's pixel grid
    raise it. ``contrast``: log10 of the luma's coefficient of variation (a dark bezel,
    a desk, a landscape have far more than a smear; guards fitted before
    ``periodicity``). ``periodicity``: the largest correlation of the luma's Laplacian
    with itself at one of :data:`PERIODICITY_LAGS` (a halftone's dot grid; guards fitted
    before ``quarter_periodicity``). ``quarter_periodicity``: the same in each quarter of
    the field, the second largest of the four (see :data:`PERIODICITY_QUARTER_RANK`).
    ``structure``: log10 of the share
    of the field (+ ``STRUCTURE_FLOOR``) that is an edge at the scale of cells (see
    ``STRUCTURE_EDGE``): a smear is covered in cell outlines, an empty field with a few
    specks of dust is not; in luma and relative to the mean luma, so neither the stain's
    colour nor the lamp moves it. ``dark`` (guards fitted before ``structure``): log10
    of the fraction of pixels darker than ``DARK_RATIO`` of the mean luma. Built into
    the guard's graph, so the worker computes them in the same compiled call as the
    probabilities.
    """

    def __init__(self, statistics=INPUT_STATISTICS, **kwargs):
        super().__init__(**kwargs)
        known = {"focus", "contrast", "dark", "structure", "periodicity", "quarter_periodicity"}
        unknown = set(statistics) - known
        if unknown:
            raise ValueError(f"unknown input statistics {sorted(unknown)}")
        self.statistics = tuple(str(v) for v in statistics)

    def call(self, x):
        # Slices, small matrix products and reductions, no convolution or pooling: ONNX
        # Runtime runs a one-channel convolution in its 16-channel blocked layout and
        # converts every map into and out of it, which made these numbers cost a
        # MobileNet as much again as half its layers. Every statistic stays (N, 1) and
        # they are concatenated, not stacked: ONNX Runtime's symbolic shape inference
        # (int8 quantisation) cannot follow a stack of batch-sized vectors.
        x = tf.cast(x, tf.float32)
        y = tf.squeeze(tf.linalg.matmul(x, tf.constant(np.reshape(LUMA, (3, 1)), tf.float32)), -1)
        mean_y, var_y = tf.nn.moments(y, axes=[1, 2])  # (N,)
        mean_y, var_y = tf.expand_dims(mean_y, -1), tf.expand_dims(var_y, -1)  # (N, 1)
        log10 = np.log(10.0)
        height, width = int(x.shape[1]), int(x.shape[2])
        of_laplacian = {"focus", "periodicity", "quarter_periodicity"} & set(self.statistics)
        lap = {}
        if of_laplacian:
            lap = _laplacian_statistics(_laplacian(y), height, width, of_laplacian)
        out = []
        for name in self.statistics:
            if name == "focus":
                out.append(tf.math.log((lap["focus"] + 1.0) / (var_y + 1.0)) / log10)
            elif name == "contrast":
                out.append(tf.math.log((tf.sqrt(var_y) + 0.5) / (mean_y + 1.0)) / log10)
            elif name in ("periodicity", "quarter_periodicity"):
                out.append(lap[name])
            elif name == "dark":
                below = tf.cast(y < DARK_RATIO * tf.expand_dims(mean_y, -1), tf.float32)
                dark = tf.reduce_mean(below, axis=[1, 2])
                out.append(tf.math.log(tf.expand_dims(dark, -1) + DARK_FLOOR) / log10)
            else:  # structure
                out.append(tf.math.log(_structure_share(y, mean_y) + STRUCTURE_FLOOR) / log10)
        return tf.concat(out, axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], len(self.statistics))  # the order runtime.guard reads

    def get_config(self):
        return {**super().get_config(), "statistics": list(self.statistics)}


def input_statistics_np(images: np.ndarray, statistics=INPUT_STATISTICS) -> np.ndarray:
    """:class:`InputStatistics` in numpy (N, len(statistics)), for tests and offline checks."""
    x = np.asarray(images, np.float64)
    y = x @ np.asarray(LUMA)
    var_y = y.var(axis=(1, 2))
    mean_y = y.mean(axis=(1, 2))
    out = []
    for name in statistics:
        if name == "focus":
            lap = (y[:, :-2, 1:-1] + y[:, 2:, 1:-1] + y[:, 1:-1, :-2] + y[:, 1:-1, 2:]) - 4 * y[
                :, 1:-1, 1:-1
            ]
            out.append(np.log10((lap.var(axis=(1, 2)) + 1.0) / (var_y + 1.0)))
        elif name == "contrast":
            out.append(np.log10((np.sqrt(var_y) + 0.5) / (mean_y + 1.0)))
        elif name == "periodicity":
            out.append(periodicity_np(y))
        elif name == "quarter_periodicity":
            out.append(quarter_periodicity_np(y))
        elif name == "dark":
            dark = (y < DARK_RATIO * mean_y[:, None, None]).mean(axis=(1, 2))
            out.append(np.log10(dark + DARK_FLOOR))
        elif name == "structure":
            out.append(np.log10(structure_share_np(y) + STRUCTURE_FLOOR))
        else:
            raise ValueError(f"unknown input statistic {name!r}")
    return np.stack(out, axis=-1)


def _correlate_np(luma: np.ndarray, kernels: np.ndarray) -> np.ndarray:
    """(N, H, W) luma correlated with (k, k, 1, C) kernels, VALID: (N, H-k+1, W-k+1, C)."""
    k = kernels.shape[0]
    n, h, w = luma.shape
    out = np.zeros((n, h - k + 1, w - k + 1, kernels.shape[-1]))
    for i, j in zip(*np.nonzero(np.any(kernels[:, :, 0, :] != 0, axis=-1)), strict=True):
        out += luma[:, i : i + h - k + 1, j : j + w - k + 1, None] * kernels[i, j, 0, :]
    return out


def periodicity_np(luma: np.ndarray) -> np.ndarray:
    """The largest correlation of each (N, H, W) luma's Laplacian with itself at one of
    :data:`PERIODICITY_LAGS`: var(L + shifted L) / (2 var(L) + 1) - 1."""
    var_lap = _correlate_np(luma, _PERIODICITY_ALONE).var(axis=(1, 2))
    var_pairs = _correlate_np(luma, _PERIODICITY_PAIRS).var(axis=(1, 2))
    return (var_pairs / (2.0 * var_lap + 1.0) - 1.0).max(axis=-1)


def quarter_periodicity_np(luma: np.ndarray) -> np.ndarray:
    """:func:`periodicity_np` of each quarter of each (N, H, W) luma field (an odd last
    row or column dropped), the second largest of the four."""
    h, w = luma.shape[1] // 2, luma.shape[2] // 2
    per_quarter = np.stack(
        [periodicity_np(luma[:, i : i + h, j : j + w]) for i in (0, h) for j in (0, w)],
        axis=-1,
    )
    return np.sort(per_quarter, axis=-1)[:, -PERIODICITY_QUARTER_RANK]


def structure_share_np(luma: np.ndarray) -> np.ndarray:
    """The share of each (N, H, W) luma field that is an edge at the scale of cells."""
    n, h, w = luma.shape
    b = structure_block(h)
    pooled = luma[:, : h // b * b, : w // b * b].reshape(n, h // b, b, w // b, b).mean(axis=(2, 4))
    gx = (pooled[:, 1:-1, 2:] - pooled[:, 1:-1, :-2]) / 2
    gy = (pooled[:, 2:, 1:-1] - pooled[:, :-2, 1:-1]) / 2
    bound = STRUCTURE_EDGE * (luma.mean(axis=(1, 2)) + 1.0)
    return (gx**2 + gy**2 > bound[:, None, None] ** 2).mean(axis=(1, 2))
