"""Convolutional LSTM: cells and layers in 1D, 2D and 3D."""

import keras
from keras import ops

from keras_convgru._conv_base import ConvRNNCellBase
from keras_convgru._conv_base import fixed_rank_config
from keras_convgru._conv_base import named_arguments
from keras_convgru._docs import Family
from keras_convgru._docs import cell_doc
from keras_convgru._docs import layer_doc
from keras_convgru.conv_rnn import ConvRecurrentLayer
from keras_convgru.conv_rnn import cell_argument

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


_LSTM_INTRO = """
    A drop-in for `keras.layers.ConvLSTM{rank}D`: the same arguments, the
    same weights (`set_weights(keras_layer.get_weights())` gives the same
    outputs), but fused gate convolutions, the input convolution hoisted
    out of the time loop for small frames, and frames of unknown size.
"""


LSTM = Family(
    name="ConvLSTM",
    math=_LSTM_MATH,
    family_args=_UNIT_FORGET_BIAS_ARG,
    state_names=("h", "c"),
    layer_intro=_LSTM_INTRO,
)


@_register
class ConvLSTMCell(ConvRNNCellBase):
    __doc__ = cell_doc(LSTM)

    gate_count = 4
    _num_states = 2

    def __init__(
        self,
        rank,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        dilation_rate=1,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        *,
        unit_forget_bias=True,
        **kwargs,
    ):
        arguments = named_arguments(locals())
        del arguments["unit_forget_bias"]
        super().__init__(**arguments, **kwargs)
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


class _ConvLSTMFixedRankCell(ConvLSTMCell):
    """A `ConvLSTMCell` whose `rank` is the class's, not an argument."""

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        dilation_rate=1,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        *,
        unit_forget_bias=True,
        **kwargs,
    ):
        super().__init__(self.rank, **named_arguments(locals()), **kwargs)

    def get_config(self):
        return fixed_rank_config(super().get_config())


@_register
class ConvLSTM1DCell(_ConvLSTMFixedRankCell):
    __doc__ = cell_doc(LSTM, 1)
    rank = 1


@_register
class ConvLSTM2DCell(_ConvLSTMFixedRankCell):
    __doc__ = cell_doc(LSTM, 2)
    rank = 2


@_register
class ConvLSTM3DCell(_ConvLSTMFixedRankCell):
    __doc__ = cell_doc(LSTM, 3)
    rank = 3


class _ConvLSTMLayer(ConvRecurrentLayer):
    """A `ConvRNN` around the family's cell of the class's rank."""

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        dilation_rate=1,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        *,
        unit_forget_bias=True,
        activity_regularizer=None,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        zero_output_for_mask=False,
        **kwargs,
    ):
        super().__init__(named_arguments(locals()), **kwargs)

    unit_forget_bias = cell_argument("unit_forget_bias")


@_register
class ConvLSTM1D(_ConvLSTMLayer):
    __doc__ = layer_doc(LSTM, 1)
    cell_class = ConvLSTM1DCell


@_register
class ConvLSTM2D(_ConvLSTMLayer):
    __doc__ = layer_doc(LSTM, 2)
    cell_class = ConvLSTM2DCell


@_register
class ConvLSTM3D(_ConvLSTMLayer):
    __doc__ = layer_doc(LSTM, 3)
    cell_class = ConvLSTM3DCell
