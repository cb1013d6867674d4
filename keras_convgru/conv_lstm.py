"""Convolutional LSTM: cells and layers in 1D, 2D and 3D."""

import keras
from keras import ops

from keras_convgru._conv_base import ConvRNNCellBase
from keras_convgru._conv_base import fixed_rank_config
from keras_convgru._docs import COMMON_CELL_ARGS
from keras_convgru._docs import cell_doc
from keras_convgru._docs import layer_doc
from keras_convgru.conv_rnn import ConvRecurrentLayer

_register = keras.saving.register_keras_serializable(package="keras_convgru")

_LSTM_MATH = """
    With `*` a convolution and `⊙` an elementwise product, gates in the
    order i, f, c, o exactly as `keras.layers.ConvLSTM2D`:

    ```
    i  = σ(Wi * x + Ui * h + bi)
    f  = σ(Wf * x + Uf * h + bf)
    c' = f ⊙ c + i ⊙ tanh(Wc * x + Uc * h + bc)
    o  = σ(Wo * x + Uo * h + bo)
    h' = o ⊙ tanh(c')
    ```

    `σ` is `recurrent_activation` and `tanh` is `activation`. The
    input-to-state convolutions `W* x` use `strides`, `padding` and
    `dilation_rate`; the state-to-state convolutions `U* h` always use
    stride 1 and `"same"` padding. The four gates' convolutions are fused:
    one convolution with `4 * filters` output channels for the input, one
    for the state (Keras's ConvLSTM runs eight per step).

    Weights, named and shaped exactly as `keras.layers.ConvLSTM2D`'s, so
    `set_weights(keras_layer.get_weights())` carries a Keras model over:

    | weight | shape |
    | --- | --- |
    | `kernel` | `kernel_size + (in_channels, 4 * filters)` |
    | `recurrent_kernel` | `kernel_size + (filters, 4 * filters)` |
    | `bias` | `(4 * filters,)` |
"""

_UNIT_FORGET_BIAS_ARG = """
        unit_forget_bias: bool (default `True`), add 1 to the forget gate's
            bias at initialization (Jozefowicz et al., 2015)."""


@_register
class ConvLSTMCell(ConvRNNCellBase):
    __doc__ = (
        """Cell of a convolutional LSTM, for any rank (1, 2 or 3).

    An LSTM whose matrix products are convolutions, so its states `h` and
    `c` are feature maps `(*spatial, filters)`. Use `ConvLSTM1DCell`,
    `ConvLSTM2DCell` or `ConvLSTM3DCell`, or this class with `rank`, inside
    `keras_convgru.ConvRNN` or a plain `keras.layers.RNN`.
"""
        + _LSTM_MATH
        + """
    Args:
        rank: int, 1, 2 or 3: the number of spatial dimensions."""
        + COMMON_CELL_ARGS.format(rank="`rank`")
        + _UNIT_FORGET_BIAS_ARG
        + """
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: one frame `(batch, *spatial, channels)` (or channels first).
        states: list `[h, c]`, each `(batch, *new_spatial, filters)`.
        training: Python boolean, whether dropout is active.

    Input shape:
        `(batch, *spatial, channels)` (`channels_last`) or
        `(batch, channels, *spatial)` (`channels_first`).

    Output shape:
        `(h, [h, c])`, each `(batch, *new_spatial, filters)` (or channels
        first), `new_spatial` the input-to-state convolution's output size.

    Example:

    >>> import numpy as np
    >>> import keras
    >>> import keras_convgru as kc
    >>> cell = kc.ConvLSTMCell(rank=1, filters=4, kernel_size=3)
    >>> layer = kc.ConvRNN(cell, return_state=True)
    >>> output, h, c = layer(np.zeros((2, 5, 10, 3), "float32"))
    >>> tuple(output.shape), tuple(c.shape)
    ((2, 8, 4), (2, 8, 4))
    """
    )

    gate_count = 4
    _num_states = 2

    def __init__(
        self,
        rank,
        filters,
        kernel_size,
        *args,
        unit_forget_bias=True,
        **kwargs,
    ):
        super().__init__(rank, filters, kernel_size, *args, **kwargs)
        self.unit_forget_bias = bool(unit_forget_bias)

    def _make_bias_initializer(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        filters = self.filters
        base = self.bias_initializer

        def bias_initializer(shape, dtype=None):
            return ops.concatenate(
                [
                    base((filters,), dtype=dtype),
                    ops.ones((filters,), dtype=dtype),
                    base((2 * filters,), dtype=dtype),
                ]
            )

        return bias_initializer

    def recurrent_step(self, projection, states, recurrent_dropout_mask=None):
        h_tm1, c_tm1 = states
        h_conv_input = self._masked_state(h_tm1, recurrent_dropout_mask)
        recurrent = self.recurrent_conv(h_conv_input, self.recurrent_kernel)
        # Sum before splitting: one split of the fused gates per step (a
        # split along the channels copies the data).
        x_i, x_f, x_c, x_o = self.split_gates(projection + recurrent)
        i = self.recurrent_activation(x_i)
        f = self.recurrent_activation(x_f)
        c = f * c_tm1 + i * self.activation(x_c)
        o = self.recurrent_activation(x_o)
        h = o * self.activation(c)
        return h, [h, c]

    def get_config(self):
        return {
            **super().get_config(),
            "unit_forget_bias": self.unit_forget_bias,
        }


def _fixed_rank_cell(rank):
    """A ConvLSTMCell subclass whose rank is fixed (not an argument)."""

    class FixedRankConvLSTMCell(ConvLSTMCell):
        def __init__(self, filters, kernel_size, *args, **kwargs):
            super().__init__(rank, filters, kernel_size, *args, **kwargs)

        def get_config(self):
            return fixed_rank_config(super().get_config())

    return FixedRankConvLSTMCell


def _cell_doc(rank):
    return cell_doc("ConvLSTM", rank, _LSTM_MATH, _UNIT_FORGET_BIAS_ARG, 2)


@_register
class ConvLSTM1DCell(_fixed_rank_cell(1)):
    __doc__ = _cell_doc(1)


@_register
class ConvLSTM2DCell(_fixed_rank_cell(2)):
    __doc__ = _cell_doc(2)


@_register
class ConvLSTM3DCell(_fixed_rank_cell(3)):
    __doc__ = _cell_doc(3)


_LSTM_INTRO = """
    A drop-in for `keras.layers.ConvLSTM{rank}D`: the same arguments, the
    same weights (`set_weights(keras_layer.get_weights())` gives the same
    outputs), but fused gate convolutions, the input convolution hoisted
    out of the time loop for small frames, and frames of unknown size.
"""


def _layer_doc(rank):
    return layer_doc(
        "ConvLSTM",
        rank,
        _LSTM_MATH,
        _UNIT_FORGET_BIAS_ARG,
        ["h", "c"],
        _LSTM_INTRO.format(rank=rank),
    )


@_register
class ConvLSTM1D(ConvRecurrentLayer):
    __doc__ = _layer_doc(1)
    cell_class = ConvLSTM1DCell


@_register
class ConvLSTM2D(ConvRecurrentLayer):
    __doc__ = _layer_doc(2)
    cell_class = ConvLSTM2DCell


@_register
class ConvLSTM3D(ConvRecurrentLayer):
    __doc__ = _layer_doc(3)
    cell_class = ConvLSTM3DCell
