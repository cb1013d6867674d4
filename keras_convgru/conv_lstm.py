"""Convolutional LSTM: cells and layers in 1D, 2D and 3D."""

import keras
from keras import ops

from keras_convgru import _gates
from keras_convgru._cell_base import fixed_rank_config
from keras_convgru._cell_base import named_arguments
from keras_convgru._docs import NORMALIZATION_ARGS
from keras_convgru._docs import NORMALIZATION_DEFINITION
from keras_convgru._docs import Family
from keras_convgru._docs import cell_doc
from keras_convgru._docs import layer_doc
from keras_convgru._gated_cell import GatedConvCell
from keras_convgru._layer_base import ConvRecurrentLayer
from keras_convgru._layer_base import NormalizationArguments
from keras_convgru._layer_base import cell_argument

_register = keras.saving.register_keras_serializable(package="keras_convgru")

_LSTM_MATH = (
    """
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

    **Peepholes** (`peepholes="channel"` or `"full"`, Shi et al. 2015:
    the gates also look at the cell state, `c` before the step and `c'`
    after it; `i` and `f` see the old state, `o` the new one):

    ```
    i  = σ(Wi * x + Ui * h + wci ⊙ c  + bi)
    f  = σ(Wf * x + Uf * h + wcf ⊙ c  + bf)
    c' = f ⊙ c + i ⊙ tanh(Wc * x + Uc * h + bc)
    o  = σ(Wo * x + Uo * h + wco ⊙ c' + bo)
    h' = o ⊙ tanh(c')
    ```

    | `peepholes` | `peephole_kernel` (after `bias`) | frames |
    | --- | --- | --- |
    | `"channel"` | `(3, filters)` | any size, `None` allowed |
    | `"full"` | `(3, *state_spatial, filters)` | static sizes only |

    The rows are `wci, wcf, wco`. `"channel"` has one weight per channel,
    broadcast over the pixels; `"full"` one per pixel and channel, as in
    the paper (with `channels_first`: `(3, filters, *state_spatial)`).
    `state_spatial` is the state's frame size (the input-to-state
    convolution's output size). `"full"` raises a `ValueError` naming
    `peepholes` when a frame size is unknown at build time, and when
    called on frames of another size. With zero peephole weights (the
    default initializer) the cell is exactly the plain ConvLSTM; with
    `peepholes=None` it has no `peephole_kernel`.

    **Normalization** (`normalization="layer"` or `"group"`), with the
    peepholes where there are any (`wc* = 0` without):

    ```
    i  = σ(N(Wi * x) + N(Ui * h) + wci ⊙ c  + bi)
    f  = σ(N(Wf * x) + N(Uf * h) + wcf ⊙ c  + bf)
    c' = f ⊙ c + i ⊙ tanh(N(Wc * x) + N(Uc * h) + bc)
    o  = σ(N(Wo * x) + N(Uo * h) + wco ⊙ c' + bo)
    h' = o ⊙ tanh(N(c'))
    ```

    The state carried to the next step is `c'` itself, not `N(c')` (Ba et
    al. 2016, as tf-addons' `LayerNormLSTMCell`).
"""
    + NORMALIZATION_DEFINITION
    + """
    | sublayer | normalizes | `gamma`, `beta` |
    | --- | --- | --- |
    | `input_norm` | `W * x`, 4 gate blocks | `(4 * filters,)` each |
    | `recurrent_norm` | `U * h`, 4 gate blocks | `(4 * filters,)` each |
    | `cell_norm` | `c'` before the output `tanh` | `(filters,)` each |
"""
)

_LSTM_ARGS = (
    """
        unit_forget_bias: bool (default `True`), add 1 to the forget gate's
            bias at initialization (Jozefowicz et al., 2015).
        peepholes: `None` (default: none, exactly Keras's ConvLSTM),
            `"channel"` or `"full"`: connections from the cell state to the
            gates (see above). `"full"` needs static frame sizes.
        peephole_initializer: initializer of `peephole_kernel` (default
            `"zeros"`: the cell starts as the plain ConvLSTM).
        peephole_regularizer: regularizer of `peephole_kernel`.
        peephole_constraint: constraint of `peephole_kernel`."""
    + NORMALIZATION_ARGS
)


_LSTM_INTRO = """
    A drop-in for `keras.layers.ConvLSTM{rank}D`: the same arguments, the
    same weights (`set_weights(keras_layer.get_weights())` gives the same
    outputs), but fused gate convolutions, the input convolution hoisted
    out of the time loop for small frames, and frames of unknown size.
"""


LSTM = Family(
    name="ConvLSTM",
    math=_LSTM_MATH,
    family_args=_LSTM_ARGS,
    state_names=("h", "c"),
    layer_intro=_LSTM_INTRO,
)


_PEEPHOLES = (None, "channel", "full")
_LSTM_ONLY_ARGUMENTS = (
    "unit_forget_bias",
    "peepholes",
    "peephole_initializer",
    "peephole_regularizer",
    "peephole_constraint",
)


@_register
class ConvLSTMCell(GatedConvCell):
    __doc__ = cell_doc(LSTM)

    gate_count = 4
    state_names = ("h", "c")
    fused_kind = "lstm"
    forget_blocks = (1,)
    norm_sublayers = ("input_norm", "recurrent_norm", "cell_norm")

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
        peepholes=None,
        peephole_initializer="zeros",
        peephole_regularizer=None,
        peephole_constraint=None,
        normalization=None,
        norm_groups=1,
        norm_epsilon=1e-3,
        **kwargs,
    ):
        arguments = named_arguments(locals())
        for name in _LSTM_ONLY_ARGUMENTS:
            del arguments[name]
        super().__init__(**arguments, **kwargs)
        self.unit_forget_bias = bool(unit_forget_bias)
        if peepholes not in _PEEPHOLES:
            raise ValueError(
                "Argument `peepholes` must be one of None, 'channel' or "
                f"'full'. Received: peepholes={peepholes!r}"
            )
        self.peepholes = peepholes
        self.peephole_initializer = keras.initializers.get(peephole_initializer)
        self.peephole_regularizer = keras.regularizers.get(peephole_regularizer)
        self.peephole_constraint = keras.constraints.get(peephole_constraint)
        self.peephole_kernel = None

    # -- peepholes and normalization ------------------------------------------

    def _peephole_shape(self):
        if self.peepholes == "channel":
            return (3, self.filters)
        state_spatial = self.state_spatial_shape(self.input_spatial_shape)
        if not all(isinstance(n, int) for n in state_spatial):
            raise ValueError(
                "peepholes='full' (one weight per pixel and channel) needs "
                "static frame sizes, but the cell's state has spatial shape "
                f"{state_spatial} (frames of spatial shape "
                f"{self.input_spatial_shape}): a size is unknown (None). "
                "Give the frame size to keras.Input, or use "
                "peepholes='channel', which works with any frame size. "
                f"Received: peepholes={self.peepholes!r}"
            )
        if self.data_format == "channels_last":
            return (3, *state_spatial, self.filters)
        return (3, self.filters, *state_spatial)

    def _build_extra_weights(self):
        if self.peepholes is None:
            return
        self.peephole_kernel = self._weight(
            "peephole_kernel", self._peephole_shape(), "peephole"
        )

    def _build_normalization(self):
        super()._build_normalization()
        self.recurrent_norm = self._make_norm("recurrent_norm", 4)
        self.cell_norm = self._make_norm("cell_norm", 1)

    def _peephole_weights(self, c_tm1):
        """`wci, wcf, wco`, shaped to broadcast against the cell state."""
        kernel = self.peephole_kernel
        if self.peepholes == "channel":
            if self.data_format == "channels_first":
                kernel = ops.reshape(
                    kernel, (3, self.filters) + (1,) * self.rank
                )
            return kernel[0], kernel[1], kernel[2]
        expected = tuple(kernel.shape[1:])
        actual = tuple(c_tm1.shape[1:])
        if all(isinstance(n, int) for n in actual) and actual != expected:
            raise ValueError(
                f"The cell was built with peepholes='full' for a state of "
                f"shape {expected} (batch excluded); it received a state of "
                f"shape {actual}. peepholes='full' fixes the frame size; use "
                "peepholes='channel' for frames of changing size."
            )
        return kernel[0], kernel[1], kernel[2]

    def fused_obstacle(self):
        if self.peepholes is not None:
            return f"peepholes={self.peepholes!r}"
        return super().fused_obstacle()

    def recurrent_step(self, projection, states, recurrent_dropout_mask=None):
        h_tm1, c_tm1 = states
        h_conv_input = self.masked_state(h_tm1, recurrent_dropout_mask)
        recurrent = self.convolve(h_conv_input, self.recurrent_kernel)
        recurrent = self._normalized(self.recurrent_norm, recurrent)
        # Sum before splitting: one split of the fused gates per step (a
        # split along the channels copies the data).
        peepholes = None
        if self.peepholes is not None:
            peepholes = self._peephole_weights(c_tm1)
        h, c, _ = _gates.lstm(
            self.split_gates(projection + recurrent, 4),
            c_tm1,
            self.activation,
            self.recurrent_activation,
            peepholes=peepholes,
            normalize_cell=self.cell_norm,
        )
        return h, [h, c]

    def get_config(self):
        return {
            **super().get_config(),
            "unit_forget_bias": self.unit_forget_bias,
            "peepholes": self.peepholes,
            "peephole_initializer": keras.initializers.serialize(
                self.peephole_initializer
            ),
            "peephole_regularizer": keras.regularizers.serialize(
                self.peephole_regularizer
            ),
            "peephole_constraint": keras.constraints.serialize(
                self.peephole_constraint
            ),
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
        peepholes=None,
        peephole_initializer="zeros",
        peephole_regularizer=None,
        peephole_constraint=None,
        normalization=None,
        norm_groups=1,
        norm_epsilon=1e-3,
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


class _ConvLSTMLayer(NormalizationArguments, ConvRecurrentLayer):
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
        peepholes=None,
        peephole_initializer="zeros",
        peephole_regularizer=None,
        peephole_constraint=None,
        normalization=None,
        norm_groups=1,
        norm_epsilon=1e-3,
        activity_regularizer=None,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        zero_output_for_mask=False,
        fuse_recurrence="auto",
        **kwargs,
    ):
        super().__init__(named_arguments(locals()), **kwargs)

    unit_forget_bias = cell_argument("unit_forget_bias")
    peepholes = cell_argument("peepholes")
    peephole_initializer = cell_argument("peephole_initializer")
    peephole_regularizer = cell_argument("peephole_regularizer")
    peephole_constraint = cell_argument("peephole_constraint")


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
