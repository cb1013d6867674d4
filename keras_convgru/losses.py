"""Balanced losses for precipitation nowcasting (Shi et al. 2017).

`BalancedMSE` and `BalancedMAE` weight each element's error by how heavy
its observed value is, so that the rare heavy rain counts more than the
common drizzle.
"""

import math
import numbers

import keras
from keras import ops

__all__ = ["BalancedMSE", "BalancedMAE"]

_register = keras.saving.register_keras_serializable(package="keras_convgru")


def _validate_numbers(values, name):
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise TypeError(
            f"Argument `{name}` must be a list of numbers. "
            f"Received: {name}={values!r}"
        )
    values = list(values)
    if not values:
        raise ValueError(
            f"Argument `{name}` must not be empty. Received: {name}={values!r}"
        )
    for value in values:
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise TypeError(
                f"Argument `{name}` must contain only numbers. "
                f"Received: {name}={values!r}"
            )
        if not math.isfinite(value):
            raise ValueError(
                f"Argument `{name}` must contain only finite numbers. "
                f"Received: {name}={values!r}"
            )
    return tuple(float(v) for v in values)


def _validate_thresholds_and_weights(thresholds, weights):
    thresholds = _validate_numbers(thresholds, "thresholds")
    weights = _validate_numbers(weights, "weights")
    if any(b <= a for a, b in zip(thresholds, thresholds[1:])):
        raise ValueError(
            "Argument `thresholds` must be strictly increasing. "
            f"Received: thresholds={list(thresholds)}"
        )
    if len(weights) != len(thresholds):
        raise ValueError(
            "Argument `weights` must have one weight per threshold "
            f"({len(thresholds)}). Received: weights={list(weights)}, "
            f"thresholds={list(thresholds)}"
        )
    if any(w < 0 for w in weights):
        raise ValueError(
            "Argument `weights` must contain only non-negative numbers. "
            f"Received: weights={list(weights)}"
        )
    return thresholds, weights


def _balancing_weights(y_true, thresholds, weights):
    """The weight of each element of `y_true`: `weights[k]` for the highest
    `thresholds[k]` it reaches (`>=`), 1 below `thresholds[0]`."""
    weight = ops.ones_like(y_true)
    for threshold, value in zip(thresholds, weights):
        weight = ops.where(y_true >= threshold, value, weight)
    return weight


_MATH = """
    With increasing `thresholds` `t_1 < ... < t_K` and their `weights`
    `w_1, ..., w_K`, each element's weight follows its observed value
    `y = y_true`:

    ```
    w(y) = 1      if y < t_1
    w(y) = w_k    if t_k <= y < t_(k+1)   (t_(K+1) = ∞)
    """

_INPUT_SHAPE = """
    Input shape:
        `y_true` and `y_pred`: the same shape, any rank, e.g. `(batch,
        time, rows, cols, channels)`. As Keras's losses, `call` averages
        over the last axis: with `reduction=None` the loss has the shape
        of `y_true` without its last axis.
"""

_ARGS = """
    Args:
        thresholds: a list of strictly increasing numbers.
        weights: a list of non-negative numbers, one per threshold: the
            weight of the elements whose `y_true` reaches that threshold
            and not the next one.
        reduction: how the per-element values are reduced, as in
            `keras.losses.Loss`: `"sum_over_batch_size"` (the default:
            the mean over all elements), `"sum"`, `"mean"`,
            `"mean_with_sample_weight"`, `"none"` or `None`.
        name: name of the loss instance.
        dtype: the dtype of the loss's computations (default
            `keras.backend.floatx()`).
"""


class _BalancedLoss(keras.losses.Loss):
    def __init__(self, thresholds, weights, reduction, name, dtype):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.thresholds, self.weights = _validate_thresholds_and_weights(
            thresholds, weights
        )

    def _error(self, difference):
        raise NotImplementedError

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.cast(y_true, y_pred.dtype)
        weight = _balancing_weights(y_true, self.thresholds, self.weights)
        return ops.mean(weight * self._error(y_true - y_pred), axis=-1)

    def get_config(self):
        return {
            **super().get_config(),
            "thresholds": list(self.thresholds),
            "weights": list(self.weights),
            "dtype": self.dtype,
        }


@_register
class BalancedMSE(_BalancedLoss):
    __doc__ = (
        """Balanced mean squared error (B-MSE, Shi et al. 2017).

    A mean squared error whose elements are weighted by the weight of the
    highest threshold their `y_true` reaches.
"""
        + _MATH
        + """B-MSE = mean over all elements of w(y_true) ⊙ (y_true − y_pred)²
    ```

    (the default reduction; Shi et al. use thresholds 2, 5, 10, 30
    mm/h with weights 2, 5, 10, 30).
"""
        + _ARGS
        + _INPUT_SHAPE
        + """
    Example:

    >>> import numpy as np
    >>> from keras_convgru import losses
    >>> loss = losses.BalancedMSE(thresholds=[1.0, 5.0], weights=[2.0, 10.0])
    >>> y_true = np.array([[0.0, 2.0, 6.0, 6.0]])
    >>> y_pred = np.array([[1.0, 1.0, 5.0, 6.0]])
    >>> float(loss(y_true, y_pred))  # (1 * 1 + 2 * 1 + 10 * 1 + 10 * 0) / 4
    3.25
    """
    )

    def __init__(
        self,
        thresholds,
        weights,
        reduction="sum_over_batch_size",
        name="balanced_mse",
        dtype=None,
    ):
        super().__init__(thresholds, weights, reduction, name, dtype)

    def _error(self, difference):
        return ops.square(difference)


@_register
class BalancedMAE(_BalancedLoss):
    __doc__ = (
        """Balanced mean absolute error (B-MAE, Shi et al. 2017).

    A mean absolute error whose elements are weighted by the weight of
    the highest threshold their `y_true` reaches.
"""
        + _MATH
        + """B-MAE = mean over all elements of w(y_true) ⊙ |y_true − y_pred|
    ```

    (the default reduction; Shi et al. use thresholds 2, 5, 10, 30
    mm/h with weights 2, 5, 10, 30).
"""
        + _ARGS
        + _INPUT_SHAPE
        + """
    Example:

    >>> import numpy as np
    >>> from keras_convgru import losses
    >>> loss = losses.BalancedMAE(thresholds=[1.0, 5.0], weights=[2.0, 10.0])
    >>> y_true = np.array([[0.0, 2.0, 6.0, 6.0]])
    >>> y_pred = np.array([[1.0, 0.0, 5.0, 6.0]])
    >>> float(loss(y_true, y_pred))  # (1 * 1 + 2 * 2 + 10 * 1 + 10 * 0) / 4
    3.75
    """
    )

    def __init__(
        self,
        thresholds,
        weights,
        reduction="sum_over_batch_size",
        name="balanced_mae",
        dtype=None,
    ):
        super().__init__(thresholds, weights, reduction, name, dtype)

    def _error(self, difference):
        return ops.abs(difference)
