"""Forecast verification metrics: streaming `keras.metrics.Metric`s.

Every metric accumulates over every batch given to `update_state` until
`reset_state`, runs on every backend (`keras.ops` only), and works in
`model.compile(metrics=[...])`, `model.fit` and `model.evaluate`.

Categorical scores (`CriticalSuccessIndex`, `ProbabilityOfDetection`,
`FalseAlarmRatio`, `HeidkeSkillScore`, `EquitableThreatScore`) count, over
all elements of `y_true` (observations) and `y_pred` (forecasts) of any
shape, the hits `a`, false alarms `b`, misses `c` and correct negatives `d`
of the event `value >= threshold`:

```
              observed   not observed
forecast         a            b
not forecast     c            d
```

Spatial scores (`FractionsSkillScore`, `StructuralSimilarity`,
`PeakSignalToNoiseRatio`) work on frames: in inputs of shape
`(..., rows, cols, channels)` (`channels_last` only) the last three axes
are a frame's rows, columns and channels, and every leading axis indexes
frames, so `(batch, time, rows, cols, channels)` holds `batch * time`
frames and `(batch, rows, cols, channels)` holds `batch`.

A score whose denominator is zero (no events at all, no frames yet) is
NaN, as in pysteps.
"""

import math
import numbers

import keras
from keras import ops

from keras_convgru._validation import validate_positive_int

__all__ = [
    "CriticalSuccessIndex",
    "ProbabilityOfDetection",
    "FalseAlarmRatio",
    "HeidkeSkillScore",
    "EquitableThreatScore",
    "FractionsSkillScore",
    "StructuralSimilarity",
    "PeakSignalToNoiseRatio",
]

_register = keras.saving.register_keras_serializable(package="keras_convgru")

# SSIM's constants (Wang et al. 2004), as skimage's defaults.
_SSIM_WINDOW = 7
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03


def _validate_threshold(threshold):
    if not isinstance(threshold, numbers.Real) or isinstance(threshold, bool):
        raise TypeError(
            "Argument `threshold` must be a number. "
            f"Received: threshold={threshold!r}"
        )
    if not math.isfinite(threshold):
        raise ValueError(
            "Argument `threshold` must be a finite number. "
            f"Received: threshold={threshold}"
        )
    return float(threshold)


def _validate_max_val(max_val):
    if not isinstance(max_val, numbers.Real) or isinstance(max_val, bool):
        raise TypeError(
            "Argument `max_val` must be a positive number. "
            f"Received: max_val={max_val!r}"
        )
    if not (math.isfinite(max_val) and max_val > 0):
        raise ValueError(
            "Argument `max_val` must be a positive, finite number. "
            f"Received: max_val={max_val}"
        )
    return float(max_val)


def _check_same_shape(y_true, y_pred):
    true_shape, pred_shape = tuple(y_true.shape), tuple(y_pred.shape)
    known = len(true_shape) == len(pred_shape) and all(
        t is None or p is None or t == p for t, p in zip(true_shape, pred_shape)
    )
    if not known:
        raise ValueError(
            "`y_true` and `y_pred` must have the same shape. Received: "
            f"y_true.shape={true_shape}, y_pred.shape={pred_shape}"
        )


def _element_weights(sample_weight, y, dtype):
    """`sample_weight` broadcast to every element of `y` (Keras's way: a
    `(batch,)` weight applies to all of a sample's elements)."""
    weight = ops.cast(sample_weight, dtype)
    if len(weight.shape) > len(y.shape):
        raise ValueError(
            "`sample_weight` must be broadcastable to `y_true`. Received: "
            f"sample_weight.shape={tuple(weight.shape)}, "
            f"y_true.shape={tuple(y.shape)}"
        )
    while len(weight.shape) < len(y.shape):
        weight = ops.expand_dims(weight, -1)
    return ops.broadcast_to(weight, ops.shape(y))


def _frames(y, name):
    """`(..., rows, cols, channels)` -> `(frames, rows, cols, channels)`."""
    if len(y.shape) < 3:
        raise ValueError(
            f"{name} needs inputs of shape (..., rows, cols, channels) "
            f"(channels_last). Received: shape={tuple(y.shape)}"
        )
    shape = ops.shape(y)
    return ops.reshape(y, (-1, shape[-3], shape[-2], shape[-1]))


def _frame_weights(sample_weight, y, dtype, name):
    """One weight per frame of `y`, `(frames,)`: `sample_weight` broadcast
    over the leading (frame) axes of `y` (ones without it)."""
    _frames(y, name)  # checks the rank
    per_frame = y[..., 0, 0, 0]
    if sample_weight is None:
        return ops.reshape(ops.ones_like(per_frame, dtype), (-1,))
    weight = ops.cast(sample_weight, dtype)
    if len(weight.shape) > len(per_frame.shape):
        raise ValueError(
            "`sample_weight` weighs whole frames: it must be broadcastable "
            f"to the frame axes of `y_true`, {tuple(y.shape)[:-3]} "
            "(every axis but rows, cols and channels). Received: "
            f"sample_weight.shape={tuple(weight.shape)}"
        )
    while len(weight.shape) < len(per_frame.shape):
        weight = ops.expand_dims(weight, -1)
    weight = ops.broadcast_to(weight, ops.shape(per_frame))
    return ops.reshape(weight, (-1,))


def _box_sum(x, size, axis):
    """Sums of `size` consecutive values along `axis` (1 or 2 of a rank-4
    `x`), zero-padded as scipy's `uniform_filter(mode="constant")` places
    its window: `size // 2` before, `(size - 1) // 2` after. Exact for
    the integer-valued fields FSS sums (cumulative sums stay below 2**24).
    """
    padding = [[0, 0]] * 4
    # One more zero in front, so that the window sum is a difference of
    # two cumulative sums that both exist.
    padding[axis] = [size // 2 + 1, (size - 1) // 2]
    cumulative = ops.cumsum(ops.pad(x, padding), axis=axis)
    if axis == 1:
        return cumulative[:, size:] - cumulative[:, :-size]
    return cumulative[:, :, size:] - cumulative[:, :, :-size]


class _ContingencyScore(keras.metrics.Metric):
    """Accumulates the 2 x 2 contingency table of `value >= threshold`."""

    def __init__(self, threshold, name, dtype, direction):
        super().__init__(name=name, dtype=dtype)
        self.threshold = _validate_threshold(threshold)
        self._direction = direction
        self.hits = self.add_variable(
            shape=(), initializer="zeros", name="hits"
        )
        self.false_alarms = self.add_variable(
            shape=(), initializer="zeros", name="false_alarms"
        )
        self.misses = self.add_variable(
            shape=(), initializer="zeros", name="misses"
        )
        self.correct_negatives = self.add_variable(
            shape=(), initializer="zeros", name="correct_negatives"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Adds a batch's counts to the table.

        Args:
            y_true: observations, any shape.
            y_pred: forecasts, the shape of `y_true`.
            sample_weight: optional weights broadcastable to `y_true` (a
                `(batch,)` weight applies to all of a sample's elements):
                each element adds its weight, not 1, to its cell of the
                table.
        """
        y_true = ops.convert_to_tensor(y_true, self.dtype)
        y_pred = ops.convert_to_tensor(y_pred, self.dtype)
        _check_same_shape(y_true, y_pred)
        observed = ops.cast(y_true >= self.threshold, self.dtype)
        forecast = ops.cast(y_pred >= self.threshold, self.dtype)
        if sample_weight is not None:
            weight = _element_weights(sample_weight, y_true, self.dtype)
            observed_w = observed * weight
            not_observed_w = (1.0 - observed) * weight
        else:
            observed_w = observed
            not_observed_w = 1.0 - observed
        self.hits.assign_add(ops.sum(forecast * observed_w))
        self.false_alarms.assign_add(ops.sum(forecast * not_observed_w))
        self.misses.assign_add(ops.sum((1.0 - forecast) * observed_w))
        self.correct_negatives.assign_add(
            ops.sum((1.0 - forecast) * not_observed_w)
        )

    def result(self):
        return self._score(
            ops.convert_to_tensor(self.hits),
            ops.convert_to_tensor(self.false_alarms),
            ops.convert_to_tensor(self.misses),
            ops.convert_to_tensor(self.correct_negatives),
        )

    def _score(self, a, b, c, d):
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


_CATEGORICAL_SHAPES = """
    Input shape:
        `y_true` (observations) and `y_pred` (forecasts): the same shape,
        any rank, e.g. `(batch, time, rows, cols, channels)`.
"""

_CATEGORICAL_ARGS = """
    Args:
        threshold: a number; an element is an event when its value is
            `>= threshold` (pysteps' `det_cat_fct` counts `> threshold`).
        name: name of the metric instance."""

_DTYPE_ARG = """
        dtype: the dtype of the accumulators and of the result (default
            `keras.backend.floatx()`, float32: the counts are exact up to
            2**24 per cell, then rounded to float32's 24 bits).
"""

_FRAME_DTYPE_ARG = """
        dtype: the dtype of the computation, the accumulators and the
            result (default `keras.backend.floatx()`, float32).
"""

_SAMPLE_WEIGHT_NOTE = """
    `update_state(y_true, y_pred, sample_weight=None)`: `sample_weight`,
    broadcastable to `y_true` (a `(batch,)` weight applies to all of a
    sample's elements), is added to the counts instead of 1 per element.
"""


@_register
class CriticalSuccessIndex(_ContingencyScore):
    __doc__ = (
        """Critical success index (threat score) of `value >= threshold`.

    The fraction of events, forecast or observed, that were both forecast
    and observed, from the hits `a`, false alarms `b` and misses `c`
    counted over all elements of all batches since `reset_state`:

    ```
    CSI = a / (a + b + c)
    ```

    1 is perfect, 0 no hit; NaN when nothing was forecast nor observed.
    The oracle is `pysteps.verification.det_cat_fct(pred, obs, thr,
    ["CSI"])`.
"""
        + _SAMPLE_WEIGHT_NOTE
        + _CATEGORICAL_ARGS
        + _DTYPE_ARG
        + _CATEGORICAL_SHAPES
        + """
    Example:

    >>> import numpy as np
    >>> from keras_convgru import metrics
    >>> m = metrics.CriticalSuccessIndex(threshold=1.0)
    >>> m.update_state(np.array([0.0, 2.0, 3.0]), np.array([1.0, 0.0, 3.0]))
    >>> m.update_state(np.array([[5.0]]), np.array([[4.0]]))
    >>> float(m.result())
    0.5

    In a model: `model.compile(loss="mse",
    metrics=[metrics.CriticalSuccessIndex(1.0, name="csi_1")])`.
    """
    )

    def __init__(self, threshold, name="critical_success_index", dtype=None):
        super().__init__(threshold, name=name, dtype=dtype, direction="up")

    def _score(self, a, b, c, d):
        return ops.divide(a, a + b + c)


@_register
class ProbabilityOfDetection(_ContingencyScore):
    __doc__ = (
        """Probability of detection (hit rate) of `value >= threshold`.

    The fraction of observed events that were forecast, from the hits `a`
    and misses `c` counted over all elements of all batches since
    `reset_state`:

    ```
    POD = a / (a + c)
    ```

    1 is perfect; NaN when no event was observed. The oracle is
    `pysteps.verification.det_cat_fct(pred, obs, thr, ["POD"])`.
"""
        + _SAMPLE_WEIGHT_NOTE
        + _CATEGORICAL_ARGS
        + _DTYPE_ARG
        + _CATEGORICAL_SHAPES
        + """
    Example:

    >>> import numpy as np
    >>> from keras_convgru import metrics
    >>> m = metrics.ProbabilityOfDetection(threshold=1.0)
    >>> m.update_state(np.array([0.0, 2.0, 3.0]), np.array([1.0, 0.0, 3.0]))
    >>> float(m.result())
    0.5
    """
    )

    def __init__(self, threshold, name="probability_of_detection", dtype=None):
        super().__init__(threshold, name=name, dtype=dtype, direction="up")

    def _score(self, a, b, c, d):
        return ops.divide(a, a + c)


@_register
class FalseAlarmRatio(_ContingencyScore):
    __doc__ = (
        """False alarm ratio of `value >= threshold` (lower is better).

    The fraction of forecast events that were not observed, from the hits
    `a` and false alarms `b` counted over all elements of all batches
    since `reset_state`:

    ```
    FAR = b / (a + b)
    ```

    0 is perfect; NaN when no event was forecast. The oracle is
    `pysteps.verification.det_cat_fct(pred, obs, thr, ["FAR"])`.
"""
        + _SAMPLE_WEIGHT_NOTE
        + _CATEGORICAL_ARGS
        + _DTYPE_ARG
        + _CATEGORICAL_SHAPES
        + """
    Example:

    >>> import numpy as np
    >>> from keras_convgru import metrics
    >>> m = metrics.FalseAlarmRatio(threshold=1.0)
    >>> m.update_state(np.array([0.0, 2.0, 3.0]), np.array([1.0, 0.0, 3.0]))
    >>> float(m.result())
    0.5
    """
    )

    def __init__(self, threshold, name="false_alarm_ratio", dtype=None):
        super().__init__(threshold, name=name, dtype=dtype, direction="down")

    def _score(self, a, b, c, d):
        return ops.divide(b, a + b)


@_register
class HeidkeSkillScore(_ContingencyScore):
    __doc__ = (
        """Heidke skill score of `value >= threshold`.

    The fraction correct relative to that of a random forecast with the
    same frequencies, from the hits `a`, false alarms `b`, misses `c` and
    correct negatives `d` counted over all elements of all batches since
    `reset_state`:

    ```
    HSS = 2 (a d − b c) / ((a + c)(c + d) + (a + b)(b + d))
    ```

    1 is perfect, 0 no skill, negative worse than chance; NaN when the
    denominator is 0 (every element in one cell of the table). The oracle
    is `pysteps.verification.det_cat_fct(pred, obs, thr, ["HSS"])`.
"""
        + _SAMPLE_WEIGHT_NOTE
        + _CATEGORICAL_ARGS
        + _DTYPE_ARG
        + _CATEGORICAL_SHAPES
        + """
    Example:

    >>> import numpy as np
    >>> from keras_convgru import metrics
    >>> m = metrics.HeidkeSkillScore(threshold=1.0)
    >>> m.update_state(
    ...     np.array([0.0, 2.0, 3.0, 0.0]), np.array([1.0, 0.0, 3.0, 0.0])
    ... )
    >>> float(m.result())
    0.0
    """
    )

    def __init__(self, threshold, name="heidke_skill_score", dtype=None):
        super().__init__(threshold, name=name, dtype=dtype, direction="up")

    def _score(self, a, b, c, d):
        return ops.divide(
            2.0 * (a * d - b * c), (a + c) * (c + d) + (a + b) * (b + d)
        )


@_register
class EquitableThreatScore(_ContingencyScore):
    __doc__ = (
        """Equitable threat score (Gilbert skill score) of `value >= threshold`.

    The critical success index corrected for the hits `r` a random
    forecast with the same frequencies would get, from the hits `a`,
    false alarms `b`, misses `c` and correct negatives `d` counted over
    all `n = a + b + c + d` elements of all batches since `reset_state`:

    ```
    r   = (a + b)(a + c) / n
    ETS = (a − r) / (a + b + c − r)
    ```

    1 is perfect, 0 no skill, down to −1/3; NaN when the denominator is 0
    (no event forecast nor observed, or only hits). The oracle is
    `pysteps.verification.det_cat_fct(pred, obs, thr, ["ETS"])`, which
    computes the same score from the probability of detection and the
    false alarm rate, and is therefore NaN also where one of those is
    0 / 0 (no observed event, or no observed non-event) while the formula
    above is 0.
"""
        + _SAMPLE_WEIGHT_NOTE
        + _CATEGORICAL_ARGS
        + _DTYPE_ARG
        + _CATEGORICAL_SHAPES
        + """
    Example:

    >>> import numpy as np
    >>> from keras_convgru import metrics
    >>> m = metrics.EquitableThreatScore(threshold=1.0)
    >>> m.update_state(
    ...     np.array([0.0, 2.0, 3.0, 0.0]), np.array([0.0, 2.0, 3.0, 0.0])
    ... )
    >>> float(m.result())
    1.0
    """
    )

    def __init__(self, threshold, name="equitable_threat_score", dtype=None):
        super().__init__(threshold, name=name, dtype=dtype, direction="up")

    def _score(self, a, b, c, d):
        n = a + b + c + d
        random_hits = ops.divide((a + b) * (a + c), n)
        return ops.divide(a - random_hits, a + b + c - random_hits)


_FRAME_SHAPES = """
    Input shape:
        `y_true` and `y_pred`: the same shape `(..., rows, cols, channels)`
        (`channels_last` only): the last three axes are the rows, columns
        and channels of a frame; every leading axis indexes frames (`(batch,
        time, rows, cols, channels)` holds `batch * time` frames)."""

_FRAME_SAMPLE_WEIGHT_NOTE = """
    `update_state(y_true, y_pred, sample_weight=None)`: `sample_weight`
    weighs whole frames: it must broadcast to the frame axes (every axis
    but the last three), e.g. `(batch,)` or `(batch, time)`; a weight of 2
    counts a frame twice, 0 leaves it out.
"""


@_register
class FractionsSkillScore(keras.metrics.Metric):
    __doc__ = (
        """Fractions skill score (Roberts and Lean 2008) at a threshold, scale.

    Each 2D field (one channel of one frame) is made binary, `I = value >=
    threshold` (non-finite values are no event, as in pysteps), and
    smoothed into the fraction of events in the `scale` x `scale` window
    around every pixel, `S = box(I) / scale²`, zero outside the field (the
    window of scipy's `uniform_filter(size=scale, mode="constant")`:
    `scale // 2` pixels before the pixel and `(scale - 1) // 2` after it,
    on each axis). Over all fields of all batches since `reset_state`
    (pysteps' `fss_accum`, then `fss_compute`):

    ```
    FSS = 1 − Σ (S_f − S_o)² / (Σ S_f² + Σ S_o²)
    ```

    with `S_f` from the forecast `y_pred` and `S_o` from the observation
    `y_true`, the sums over every pixel of every field. 1 is perfect, 0
    no overlap at that scale; NaN when no event was forecast nor
    observed. The oracle is `pysteps.verification.spatialscores.fss_init`,
    `fss_accum` (once per 2D field) and `fss_compute`.
"""
        + _FRAME_SAMPLE_WEIGHT_NOTE
        + """
    Args:
        threshold: a number; a pixel is an event when its value is
            `>= threshold`.
        scale: a positive integer, the side of the square window, in
            pixels (1: the binary fields themselves).
        name: name of the metric instance."""
        + _FRAME_DTYPE_ARG
        + _FRAME_SHAPES
        + """

    Example:

    >>> import numpy as np
    >>> from keras_convgru import metrics
    >>> y_true = np.zeros((1, 4, 4, 1), "float32")
    >>> y_true[0, 1, 1, 0] = 5.0
    >>> y_pred = np.zeros((1, 4, 4, 1), "float32")
    >>> y_pred[0, 1, 2, 0] = 5.0
    >>> m = metrics.FractionsSkillScore(threshold=1.0, scale=1)
    >>> m.update_state(y_true, y_pred)
    >>> float(m.result())
    0.0
    >>> m = metrics.FractionsSkillScore(threshold=1.0, scale=2)
    >>> m.update_state(y_true, y_pred)
    >>> float(m.result())
    0.5
    """
    )

    def __init__(
        self, threshold, scale, name="fractions_skill_score", dtype=None
    ):
        super().__init__(name=name, dtype=dtype)
        self.threshold = _validate_threshold(threshold)
        self.scale = validate_positive_int(scale, "scale")
        self._direction = "up"
        self.sum_fct_sq = self.add_variable(
            shape=(), initializer="zeros", name="sum_fct_sq"
        )
        self.sum_fct_obs = self.add_variable(
            shape=(), initializer="zeros", name="sum_fct_obs"
        )
        self.sum_obs_sq = self.add_variable(
            shape=(), initializer="zeros", name="sum_obs_sq"
        )

    def _fractions(self, y):
        finite = ops.isfinite(y)
        events = ops.cast(
            ops.logical_and(finite, y >= self.threshold), self.dtype
        )
        if self.scale == 1:
            return events
        counts = _box_sum(_box_sum(events, self.scale, 1), self.scale, 2)
        return counts / float(self.scale**2)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.convert_to_tensor(y_true, self.dtype)
        y_pred = ops.convert_to_tensor(y_pred, self.dtype)
        _check_same_shape(y_true, y_pred)
        weight = _frame_weights(
            sample_weight, y_true, self.dtype, type(self).__name__
        )
        s_o = self._fractions(_frames(y_true, "FractionsSkillScore"))
        s_f = self._fractions(_frames(y_pred, "FractionsSkillScore"))
        axes = (1, 2, 3)
        self.sum_fct_sq.assign_add(ops.sum(weight * ops.sum(s_f * s_f, axes)))
        self.sum_fct_obs.assign_add(ops.sum(weight * ops.sum(s_f * s_o, axes)))
        self.sum_obs_sq.assign_add(ops.sum(weight * ops.sum(s_o * s_o, axes)))

    def result(self):
        fct_sq = ops.convert_to_tensor(self.sum_fct_sq)
        fct_obs = ops.convert_to_tensor(self.sum_fct_obs)
        obs_sq = ops.convert_to_tensor(self.sum_obs_sq)
        return 1.0 - ops.divide(
            fct_sq - 2.0 * fct_obs + obs_sq, fct_sq + obs_sq
        )

    def get_config(self):
        return {
            **super().get_config(),
            "threshold": self.threshold,
            "scale": self.scale,
        }


class _FrameMean(keras.metrics.Metric):
    """The (weighted) mean over frames of a per-frame score."""

    def __init__(self, max_val, name, dtype):
        super().__init__(name=name, dtype=dtype)
        self.max_val = _validate_max_val(max_val)
        self._direction = "up"
        self.total = self.add_variable(
            shape=(), initializer="zeros", name="total"
        )
        self.count = self.add_variable(
            shape=(), initializer="zeros", name="count"
        )

    def _add(self, scores, weight):
        """Adds `scores`, `(frames, k)` (k values per frame, each counted
        once), weighted by `weight`, `(frames,)`."""
        weight = ops.expand_dims(weight, -1)
        # A frame of weight 0 adds nothing, even where its score is inf.
        weighted = ops.where(weight != 0, weight * scores, 0.0)
        per_frame = ops.cast(ops.shape(scores)[1], self.dtype)
        self.total.assign_add(ops.sum(weighted))
        self.count.assign_add(ops.sum(weight) * per_frame)

    def result(self):
        return ops.divide(
            ops.convert_to_tensor(self.total), ops.convert_to_tensor(self.count)
        )

    def get_config(self):
        return {**super().get_config(), "max_val": self.max_val}


@_register
class StructuralSimilarity(_FrameMean):
    __doc__ = (
        """Mean structural similarity (SSIM, Wang et al. 2004) over frames.

    For each channel of each frame, with `x` from `y_true` and `y` from
    `y_pred`, local statistics over every 7 x 7 window that fits inside
    the frame (uniform weights, `N = 49` pixels; no padding), the
    variances and covariance with the sample normalization `1 / (N − 1)`:

    ```
    μx, μy = window means of x, y
    σx²    = N / (N − 1) · (window mean of x²  − μx²)
    σy²    = N / (N − 1) · (window mean of y²  − μy²)
    σxy    = N / (N − 1) · (window mean of x y − μx μy)
    C1 = (0.01 · max_val)²,  C2 = (0.03 · max_val)²
    SSIM = (2 μx μy + C1)(2 σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2))
    ```

    A channel's SSIM is the mean over its windows; the metric is the mean
    over every channel of every frame of all batches since `reset_state`
    (frames all have the same size, so this is also the mean over frames
    of each frame's mean over channels). This is what
    `skimage.metrics.structural_similarity(x, y, data_range=max_val,
    channel_axis=-1)` computes for one frame with its defaults
    (`win_size=7`, `gaussian_weights=False`, `use_sample_covariance=True`,
    `K1=0.01`, `K2=0.03`; its mean over the valid windows is our
    "windows that fit"). Frames need at least 7 rows and 7 columns. NaN
    before any frame.
"""
        + _FRAME_SAMPLE_WEIGHT_NOTE
        + """
    Args:
        max_val: the dynamic range of the data (skimage's `data_range`):
            1.0 for images in [0, 1], 255 for 8-bit images.
        name: name of the metric instance."""
        + _FRAME_DTYPE_ARG
        + _FRAME_SHAPES
        + """

    Example:

    >>> import numpy as np
    >>> from keras_convgru import metrics
    >>> rng = np.random.default_rng(0)
    >>> y_true = rng.uniform(size=(2, 3, 16, 16, 1))
    >>> m = metrics.StructuralSimilarity(max_val=1.0)
    >>> m.update_state(y_true, y_true)
    >>> round(float(m.result()), 4)
    1.0
    >>> m.update_state(y_true, np.zeros_like(y_true))
    >>> 0.0 < float(m.result()) < 1.0
    True
    """
    )

    def __init__(self, max_val=1.0, name="structural_similarity", dtype=None):
        super().__init__(max_val, name=name, dtype=dtype)

    def _channel_fields(self, y):
        # (frames, rows, cols, channels) -> (frames * channels, rows, cols, 1)
        shape = ops.shape(y)
        y = ops.transpose(y, (0, 3, 1, 2))
        return ops.reshape(y, (-1, shape[1], shape[2], 1))

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.convert_to_tensor(y_true, self.dtype)
        y_pred = ops.convert_to_tensor(y_pred, self.dtype)
        _check_same_shape(y_true, y_pred)
        x = _frames(y_true, "StructuralSimilarity")
        rows, cols = tuple(x.shape)[1:3]
        for size, axis in ((rows, "rows"), (cols, "cols")):
            if size is not None and size < _SSIM_WINDOW:
                raise ValueError(
                    f"StructuralSimilarity needs frames of at least "
                    f"{_SSIM_WINDOW} rows and columns (its window). Received "
                    f"{axis}={size} in shape {tuple(y_true.shape)}"
                )
        weight = _frame_weights(
            sample_weight, y_true, self.dtype, type(self).__name__
        )
        frames = ops.shape(x)[0]
        x = self._channel_fields(x)
        y = self._channel_fields(_frames(y_pred, "StructuralSimilarity"))
        # The variances and the covariance are those of the fields less
        # their own means, which float32 computes with less cancellation
        # (σx² = mean(x²) − μx² loses the digits that μx² and mean(x²)
        # share); the means are put back for μx and μy.
        x_mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
        y_mean = ops.mean(y, axis=(1, 2, 3), keepdims=True)
        x = x - x_mean
        y = y - y_mean
        stacked = ops.concatenate([x, y, x * x, y * y, x * y], axis=-1)
        window = _SSIM_WINDOW * _SSIM_WINDOW
        kernel = ops.full(
            (_SSIM_WINDOW, _SSIM_WINDOW, 5, 1), 1.0 / window, self.dtype
        )
        local = ops.depthwise_conv(
            stacked,
            kernel,
            strides=1,
            padding="valid",
            data_format="channels_last",
        )
        mu_x, mu_y, mean_xx, mean_yy, mean_xy = (
            local[..., i] for i in range(5)
        )
        cov_norm = window / (window - 1.0)
        var_x = cov_norm * (mean_xx - mu_x * mu_x)
        var_y = cov_norm * (mean_yy - mu_y * mu_y)
        cov_xy = cov_norm * (mean_xy - mu_x * mu_y)
        mu_x = mu_x + x_mean[..., 0]
        mu_y = mu_y + y_mean[..., 0]
        c1 = (_SSIM_K1 * self.max_val) ** 2
        c2 = (_SSIM_K2 * self.max_val) ** 2
        ssim = ((2.0 * mu_x * mu_y + c1) * (2.0 * cov_xy + c2)) / (
            (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
        )
        # One SSIM per channel of each frame: (frames, channels).
        per_channel = ops.reshape(ops.mean(ssim, axis=(1, 2)), (frames, -1))
        self._add(per_channel, weight)


@_register
class PeakSignalToNoiseRatio(_FrameMean):
    __doc__ = (
        """Mean peak signal-to-noise ratio over frames, in decibels.

    For each frame, over all its rows, columns and channels, with the
    observation `y_true` and the forecast `y_pred`:

    ```
    MSE  = mean((y_true − y_pred)²)
    PSNR = 10 log10(max_val² / MSE)
    ```

    The metric is the mean of the frames' PSNR over every frame of all
    batches since `reset_state` (not the PSNR of the pooled MSE).
    `skimage.metrics.peak_signal_noise_ratio(y_true_frame, y_pred_frame,
    data_range=max_val)` is one frame's value. A frame equal to its
    forecast has an infinite PSNR (as in skimage), so then is the mean;
    NaN before any frame.
"""
        + _FRAME_SAMPLE_WEIGHT_NOTE
        + """
    Args:
        max_val: the dynamic range of the data (skimage's `data_range`):
            1.0 for images in [0, 1], 255 for 8-bit images.
        name: name of the metric instance."""
        + _FRAME_DTYPE_ARG
        + _FRAME_SHAPES
        + """

    Example:

    >>> import numpy as np
    >>> from keras_convgru import metrics
    >>> y_true = np.zeros((2, 4, 4, 1), "float32")
    >>> m = metrics.PeakSignalToNoiseRatio(max_val=1.0)
    >>> m.update_state(y_true, y_true + 0.1)
    >>> round(float(m.result()), 4)
    20.0
    """
    )

    def __init__(
        self, max_val=1.0, name="peak_signal_to_noise_ratio", dtype=None
    ):
        super().__init__(max_val, name=name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.convert_to_tensor(y_true, self.dtype)
        y_pred = ops.convert_to_tensor(y_pred, self.dtype)
        _check_same_shape(y_true, y_pred)
        weight = _frame_weights(
            sample_weight, y_true, self.dtype, type(self).__name__
        )
        error = _frames(y_true, "PeakSignalToNoiseRatio") - _frames(
            y_pred, "PeakSignalToNoiseRatio"
        )
        mse = ops.mean(error * error, axis=(1, 2, 3))
        psnr = 10.0 * ops.log10(ops.divide(self.max_val**2, mse))
        self._add(ops.expand_dims(psnr, -1), weight)
