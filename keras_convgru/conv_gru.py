"""Convolutional GRU: cells and layers in 1D, 2D and 3D."""

import keras

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

_GRU_MATH = (
    """
    With `*` a convolution and `⊙` an elementwise product, gates in the
    order z, r, h exactly as `keras.layers.GRUCell`:

    ```
    z  = σ(Wz * x + Uz * h + bz)
    r  = σ(Wr * x + Ur * h + br)
    reset_after=True : h̃ = tanh(Wh * x + bxh + r ⊙ (Uh * h + bhh))
    reset_after=False: h̃ = tanh(Wh * x + Uh * (r ⊙ h) + bh)
    h' = z ⊙ h + (1 − z) ⊙ h̃
    ```

    `σ` is `recurrent_activation` and `tanh` is `activation`. With
    `reset_after=True` (the default, as in Keras and cuDNN) the reset gate
    scales the state's convolution *after* it is computed, so the input and
    the state have separate biases; with `reset_after=False` it scales the
    state *before* its convolution (the original GRU formulation).

    The input-to-state convolutions `W* x` use `strides`, `padding` and
    `dilation_rate`; the state-to-state convolutions `U* h` always use
    stride 1 and `"same"` padding. The three gates' convolutions are fused:
    one convolution with `3 * filters` output channels for the input and,
    with `reset_after=True`, one for the state; with `reset_after=False`
    the state needs two (`2 * filters` channels on `h` for z and r, then
    `filters` channels on `r ⊙ h`).

    Weights, as `keras.layers.GRU`'s with convolution kernels:

    | weight | shape |
    | --- | --- |
    | `kernel` | `kernel_size + (in_channels, 3 * filters)` |
    | `recurrent_kernel` | `kernel_size + (filters, 3 * filters)` |
    | `bias`, `reset_after=False` | `(3 * filters,)` |
    | `bias`, `reset_after=True` | `(2, 3 * filters)`, rows: input, recurrent |

    With an all-ones `kernel_size` on 1-pixel frames this is exactly
    `keras.layers.GRU` with the same (reshaped) weights.

    **Normalization** (`normalization="layer"` or `"group"`): each gate's
    block of the input convolution and of the state's convolutions is
    normalized before the biases are added (`bxz + bhz` is `bz` above):

    ```
    reset_after=True:
      z  = σ(N(Wz * x) + bxz + N(Uz * h) + bhz)
      r  = σ(N(Wr * x) + bxr + N(Ur * h) + bhr)
      h̃  = tanh(N(Wh * x) + bxh + r ⊙ (N(Uh * h) + bhh))
    reset_after=False:
      z  = σ(N(Wz * x) + N(Uz * h) + bz)
      r  = σ(N(Wr * x) + N(Ur * h) + br)
      h̃  = tanh(N(Wh * x) + N(Uh * (r ⊙ h)) + bh)
    h' = z ⊙ h + (1 − z) ⊙ h̃
    ```
"""
    + NORMALIZATION_DEFINITION
    + """
    | sublayer (`reset_after`) | normalizes | `gamma`, `beta` |
    | --- | --- | --- |
    | `input_norm` | `W * x` (z, r, h) | `(3 * filters,)` |
    | `recurrent_norm` (`True`) | `U * h` (z, r, h) | `(3 * filters,)` |
    | `recurrent_norm` (`False`) | `Uz * h`, `Ur * h` | `(2 * filters,)` |
    | `candidate_norm` (`False` only) | `Uh * (r ⊙ h)` | `(filters,)` |
"""
)

_GRU_ARGS = (
    """
        reset_after: bool (default `True`), apply the reset gate after the
            state's convolution (see above)."""
    + NORMALIZATION_ARGS
)


_GRU_INTRO = """
    A GRU whose matrix products are convolutions: for sequences of frames
    (video, radar, volumes) where the state must stay a feature map. It has
    three gates to the LSTM's four: a quarter fewer parameters and FLOPs,
    and no separate cell state.
"""


GRU = Family(
    name="ConvGRU",
    math=_GRU_MATH,
    family_args=_GRU_ARGS,
    state_names=("h",),
    layer_intro=_GRU_INTRO,
)


@_register
class ConvGRUCell(GatedConvCell):
    __doc__ = cell_doc(GRU)

    gate_count = 3
    state_names = ("h",)
    fused_kind = "gru"
    norm_sublayers = ("input_norm", "recurrent_norm", "candidate_norm")

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
        reset_after=True,
        normalization=None,
        norm_groups=1,
        norm_epsilon=1e-3,
        **kwargs,
    ):
        arguments = named_arguments(locals())
        del arguments["reset_after"]
        super().__init__(**arguments, **kwargs)
        self.reset_after = bool(reset_after)

    def _build_normalization(self):
        super()._build_normalization()
        if self.reset_after:
            self.recurrent_norm = self._make_norm("recurrent_norm", 3)
        else:
            # Two state-to-state convolutions: z and r on `h`, then the
            # candidate's on `r ⊙ h`.
            self.recurrent_norm = self._make_norm("recurrent_norm", 2)
            self.candidate_norm = self._make_norm("candidate_norm", 1)

    def _bias_shape(self):
        if self.reset_after:
            return (2, self.gate_count * self.filters)
        return (self.gate_count * self.filters,)

    def input_bias(self):
        if not self.use_bias:
            return None
        return self.bias[0] if self.reset_after else self.bias

    def fused_obstacle(self):
        if not self.reset_after:
            return "`reset_after=False`"
        return super().fused_obstacle()

    def recurrent_step(self, projection, states, recurrent_dropout_mask=None):
        h_tm1 = states[0] if keras.tree.is_nested(states) else states
        h_conv_input = self.masked_state(h_tm1, recurrent_dropout_mask)
        # Equal splits (one `Split` op, whose gradient is one concatenation)
        # rather than slices: on TensorFlow every slice's gradient writes a
        # zero tensor of the whole input, which made the slices the largest
        # single cost of a step on small frames.
        x_z, x_r, x_h = self.split_gates(projection, 3)
        if self.reset_after:
            recurrent = self.convolve(h_conv_input, self.recurrent_kernel)
            recurrent = self._normalized(self.recurrent_norm, recurrent)
            if self.use_bias:
                recurrent = self.add_channel_bias(recurrent, self.bias[1])
            h, *_ = _gates.gru_reset_after(
                (x_z, x_r, x_h),
                self.split_gates(recurrent, 3),
                h_tm1,
                self.activation,
                self.recurrent_activation,
            )
        else:
            zr = 2 * self.filters
            h_zr = self.convolve(h_conv_input, self.recurrent_kernel[..., :zr])
            h_zr = self._normalized(self.recurrent_norm, h_zr)
            h_z, h_r = self.split_gates(h_zr, 2)
            z, r = _gates.gru_update_reset(
                x_z, x_r, h_z, h_r, self.recurrent_activation
            )
            h_h = self.convolve(
                r * h_conv_input, self.recurrent_kernel[..., zr:]
            )
            h_h = self._normalized(self.candidate_norm, h_h)
            h_tilde = self.activation(x_h + h_h)
            h = _gates.gru_blend(z, h_tilde, h_tm1)
        new_states = [h] if keras.tree.is_nested(states) else h
        return h, new_states

    def get_config(self):
        return {**super().get_config(), "reset_after": self.reset_after}


class _ConvGRUFixedRankCell(ConvGRUCell):
    """A `ConvGRUCell` whose `rank` is the class's, not an argument."""

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
        reset_after=True,
        normalization=None,
        norm_groups=1,
        norm_epsilon=1e-3,
        **kwargs,
    ):
        super().__init__(self.rank, **named_arguments(locals()), **kwargs)

    def get_config(self):
        return fixed_rank_config(super().get_config())


@_register
class ConvGRU1DCell(_ConvGRUFixedRankCell):
    __doc__ = cell_doc(GRU, 1)
    rank = 1


@_register
class ConvGRU2DCell(_ConvGRUFixedRankCell):
    __doc__ = cell_doc(GRU, 2)
    rank = 2


@_register
class ConvGRU3DCell(_ConvGRUFixedRankCell):
    __doc__ = cell_doc(GRU, 3)
    rank = 3


class _ConvGRULayer(NormalizationArguments, ConvRecurrentLayer):
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
        reset_after=True,
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

    reset_after = cell_argument("reset_after")


@_register
class ConvGRU1D(_ConvGRULayer):
    __doc__ = layer_doc(GRU, 1)
    cell_class = ConvGRU1DCell


@_register
class ConvGRU2D(_ConvGRULayer):
    __doc__ = layer_doc(GRU, 2)
    cell_class = ConvGRU2DCell


@_register
class ConvGRU3D(_ConvGRULayer):
    __doc__ = layer_doc(GRU, 3)
    cell_class = ConvGRU3DCell
