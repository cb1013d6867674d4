"""PredRNN's spatiotemporal LSTM and PredRNN++'s causal LSTM and gradient
highway unit: cells with a spatiotemporal memory, and their layers.

The spatiotemporal memory `m` of these cells flows up through a stack of
them within a time step and from the top cell back to the bottom one at
the next step (the zigzag of Wang et al. 2017), which `ConvRNN` runs for
any cell whose `memory_state_index` names its memory (see `ConvRNN` and
docs/guides/cells.md). The equations are those of the authors' code
(thuml/predrnn-pytorch, OpenSTL); docs/api/predrnn.md has them with the
weight tables.
"""

import keras
from keras import ops

from keras_convgru._cell_base import named_arguments
from keras_convgru._docs import same_geometry_cell_doc
from keras_convgru._docs import same_geometry_layer_doc
from keras_convgru._gated_cell import SameGeometryCell
from keras_convgru._layer_base import ConvRecurrentLayer
from keras_convgru._layer_base import cell_argument
from keras_convgru._validation import validate_non_negative

_register = keras.saving.register_keras_serializable(package="keras_convgru")

_ZIGZAG = """
    In a `keras_convgru.ConvRNN` stack the memory `m` flows in a zigzag, as
    in PredRNN: at step `t` the first memory cell of the stack reads the
    `m'` that the last memory cell wrote at step `t − 1` (at the first
    step, the last memory cell's initial `m`), and each further memory
    cell reads the `m'` that the memory cell before it wrote at step `t`.
    Other cells (`GradientHighwayUnit2DCell`, ConvGRU, ConvLSTM) pass their
    output up and never see `m`. Every memory cell of a stack has the same
    `filters`. Alone (or as the only memory cell), `m` simply recurs.
"""

_ST_LSTM_MATH = (
    """
    With `*` a convolution (`k x k`, stride 1, `"same"`; `W1` and `A`
    1 x 1), `⊙` an elementwise product and `[a ; b]` channels concatenated:

    ```
    [i_x, f_x, g_x, i'_x, f'_x, g'_x, o_x] = W * x + b
    [i_h, f_h, g_h, o_h]                    = U * h
    [i_m, f_m, g_m]                         = V * m
    i  = σ(i_x + i_h),   f  = σ(f_x + f_h),   g  = tanh(g_x + g_h)
    c' = f ⊙ c + i ⊙ g
    i' = σ(i'_x + i_m),  f' = σ(f'_x + f_m),  g' = tanh(g'_x + g_m)
    m' = f' ⊙ m + i' ⊙ g'
    o  = σ(o_x + o_h + Wo * [c' ; m'])
    h' = o ⊙ tanh(W1 * [c' ; m'])
    ```

    `σ` is `recurrent_activation`, `tanh` is `activation`; the states are
    `[h, c, m]` and the output is `h'`.

    | weight (`F` = `filters`, `C` = input channels) | shape |
    | --- | --- |
    | `kernel` (W) | `(k, k, C, 7F)`, blocks as above |
    | `recurrent_kernel` (U) | `(k, k, F, 4F)`, blocks `i, f, g, o` |
    | `memory_kernel` (V) | `(k, k, F, 3F)`, blocks `i', f', g'` |
    | `output_kernel` (Wo) | `(k, k, 2F, F)`, input `[c' ; m']` |
    | `fusion_kernel` (W1) | `(1, 1, 2F, F)`, input `[c' ; m']` |
    | `bias` (b) | `(7F,)` |
    | `decoupling_kernel` (A; `decoupling_weight > 0`) | `(1, 1, F, F)` |

    **PredRNN-V2's decoupling loss** (Wang et al. 2022): with
    `decoupling_weight > 0` the layer adds to its `losses`, in training,
    `decoupling_weight` times the mean over time steps, samples and
    channels of `|cos(A * Δc, A * Δm)|`, `Δc = i ⊙ g`, `Δm = i' ⊙ g'`, the
    cosine taken over the pixels of each channel (PredRNN-V2 shares one
    `A` between layers; here each cell has its own).
"""
    + _ZIGZAG
)

_CAUSAL_LSTM_MATH = (
    """
    With `*` a convolution (`k x k`, stride 1, `"same"`; `W1` 1 x 1):

    ```
    [i_x, f_x, g_x, i'_x, f'_x, g'_x, o_x] = W * x + b
    [i_h, f_h, g_h, o_h]                    = U * h
    [i_c, f_c, g_c]                         = Uc * c
    [i_m, f_m, m_m]                         = V * m
    i  = σ(i_x + i_h + i_c),  f = σ(f_x + f_h + f_c)
    g  = tanh(g_x + g_h + g_c)
    c' = f ⊙ c + i ⊙ g
    [i_c', g_c', f_c', o_c'] = Wcm * c'
    i' = σ(i'_x + i_m + i_c'),  f' = σ(f'_x + f_m + f_c')
    g' = tanh(g'_x + g_c')
    m' = f' ⊙ tanh(m_m) + i' ⊙ g'
    o  = tanh(o_x + o_h + o_c' + Wom * m')
    h' = o ⊙ tanh(W1 * [c' ; m'])
    ```

    `o` uses `tanh`, as in the paper and the authors' code. The states are
    `[h, c, m]` and the output is `h'`.

    | weight (`F` = `filters`, `C` = input channels) | shape |
    | --- | --- |
    | `kernel` (W) | `(k, k, C, 7F)` |
    | `recurrent_kernel` (U) | `(k, k, F, 4F)`, blocks `i, f, g, o` |
    | `cell_kernel` (Uc) | `(k, k, F, 3F)`, blocks `i, f, g` |
    | `memory_kernel` (V) | `(k, k, F, 3F)`, blocks `i', f', m_m` |
    | `cell_to_memory_kernel` (Wcm) | `(k, k, F, 4F)`, blocks `i, g, f, o` |
    | `memory_output_kernel` (Wom) | `(k, k, F, F)` |
    | `fusion_kernel` (W1) | `(1, 1, 2F, F)` |
    | `bias` (b) | `(7F,)` |
"""
    + _ZIGZAG
)

_GHU_MATH = """
    PredRNN++'s gradient highway between its first two causal LSTMs
    (`keras_convgru.ConvRNN([CausalLSTM, GradientHighwayUnit, CausalLSTM,
    CausalLSTM])`), with `*` a `k x k` convolution:

    ```
    [p_x, u_x] = Wx * x + b,   [p_z, u_z] = Wz * z
    p = tanh(p_x + p_z),  u = σ(u_x + u_z)
    z' = u ⊙ p + (1 − u) ⊙ z
    ```

    | weight (`F` = `filters`, `C` = input channels) | shape |
    | --- | --- |
    | `kernel` (Wx) | `(k, k, C, 2F)` |
    | `recurrent_kernel` (Wz) | `(k, k, F, 2F)` |
    | `bias` (b) | `(2F,)` |

    Its one state is `[z]`; it has no memory `m` and passes its output up
    a stack as any cell does.
"""

_FORGET_ARG = """
        unit_forget_bias: bool (default `True`), start the bias of both
            forget gates, `f` and `f'`, at 1 (the authors' constant forget
            bias of 1.0)."""

_DECOUPLING_ARG = """
        decoupling_weight: float >= 0 (default `0.0`: off, no
            `decoupling_kernel`), the weight of PredRNN-V2's decoupling
            loss (see above)."""


def _cell_example(name, states):
    shapes = ", ".join(["(2, 16, 16, 4)"] * (1 + states))
    return f"""
    >>> cell = kc.{name}Cell(4, 3)
    >>> layer = kc.ConvRNN(cell, return_state=True)
    >>> outputs = layer(np.zeros((2, 5, 16, 16, 3), "float32"))
    >>> [tuple(t.shape) for t in outputs]
    [{shapes}]"""


def _layer_example(name):
    return f"""
    >>> inputs = keras.Input((None, None, None, 1))
    >>> outputs = kc.{name}(8, 3, return_sequences=True)(inputs)
    >>> model = keras.Model(inputs, outputs)
    >>> tuple(model(np.zeros((2, 5, 16, 16, 1), "float32")).shape)
    (2, 5, 16, 16, 8)"""


_PREDRNN_EXAMPLE = """
    >>> cells = [kc.SpatioTemporalLSTM2DCell(8, 3) for _ in range(4)]
    >>> predrnn = kc.ConvRNN(cells, return_sequences=True)  # PredRNN
    >>> tuple(predrnn(np.zeros((2, 5, 16, 16, 3), "float32")).shape)
    (2, 5, 16, 16, 8)"""

_PREDRNN_PP_EXAMPLE = """
    >>> cells = [kc.CausalLSTM2DCell(8, 3), kc.GradientHighwayUnit2DCell(8, 3),
    ...          kc.CausalLSTM2DCell(8, 3), kc.CausalLSTM2DCell(8, 3)]
    >>> predrnn_pp = kc.ConvRNN(cells, return_sequences=True)  # PredRNN++
    >>> tuple(predrnn_pp(np.zeros((2, 5, 16, 16, 3), "float32")).shape)
    (2, 5, 16, 16, 8)"""


class _MemoryCell(SameGeometryCell):
    """What the spatiotemporal LSTM and the causal LSTM share: states
    `[h, c, m]`, the memory passed along a stack, 7 gate blocks on the
    input, the forget gates `f` and `f'` (`unit_forget_bias`), and the
    output `h' = o ⊙ tanh(W1 * [c' ; m'])`."""

    gate_count = 7
    state_names = ("h", "c", "m")
    memory_state_index = 2
    # [i, f, g, i', f', g', o]: f and f' are forget gates.
    forget_blocks = (1, 4)

    def __init__(self, filters, kernel_size, *, unit_forget_bias, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        self.unit_forget_bias = bool(unit_forget_bias)

    def _recurrent_kernel_shape(self):
        # U * h: the blocks i, f, g, o.
        return self.kernel_size + (self.filters, 4 * self.filters)

    def _state_kernel(self, name, in_blocks, out_blocks, kernel_size=None):
        """A kernel on the states, with the `recurrent_*` arguments."""
        kernel_size = kernel_size or self.kernel_size
        shape = kernel_size + (
            in_blocks * self.filters,
            out_blocks * self.filters,
        )
        return self._weight(name, shape)

    def get_config(self):
        return {
            **super().get_config(),
            "unit_forget_bias": self.unit_forget_bias,
        }


@_register
class SpatioTemporalLSTM2DCell(_MemoryCell):
    __doc__ = same_geometry_cell_doc(
        "Spatiotemporal LSTM cell (ST-LSTM, PredRNN, Wang et al. 2017), 2D.",
        _ST_LSTM_MATH,
        _FORGET_ARG + _DECOUPLING_ARG,
        ("h", "c", "m"),
        _cell_example("SpatioTemporalLSTM2D", 3) + _PREDRNN_EXAMPLE,
    )

    def __init__(
        self,
        filters,
        kernel_size,
        data_format=None,
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
        decoupling_weight=0.0,
        strides=1,
        padding="same",
        dilation_rate=1,
        **kwargs,
    ):
        arguments = named_arguments(locals())
        del arguments["decoupling_weight"]
        super().__init__(**arguments, **kwargs)
        self.decoupling_weight = validate_non_negative(
            decoupling_weight, "decoupling_weight"
        )

    @property
    def step_loss_weight(self):
        """The weight of the decoupling loss (see `recurrent_step_and_loss`)."""
        return self.decoupling_weight

    def _build_state_weights(self):
        self.memory_kernel = self._state_kernel("memory_kernel", 1, 3)
        self.output_kernel = self._state_kernel("output_kernel", 2, 1)
        self.fusion_kernel = self._state_kernel("fusion_kernel", 2, 1, (1, 1))

    def _build_extra_weights(self):
        self.decoupling_kernel = None
        if self.decoupling_weight > 0:
            self.decoupling_kernel = self._state_kernel(
                "decoupling_kernel", 1, 1, (1, 1)
            )

    def _step(self, projection, states, recurrent_dropout_mask):
        h, c, m = states
        h_in = self.masked_state(h, recurrent_dropout_mask)
        i_x, f_x, g_x, i_x2, f_x2, g_x2, o_x = self.split_gates(projection, 7)
        i_h, f_h, g_h, o_h = self.split_gates(
            self.convolve(h_in, self.recurrent_kernel), 4
        )
        i_m, f_m, g_m = self.split_gates(
            self.convolve(m, self.memory_kernel), 3
        )
        sigma, tanh = self.recurrent_activation, self.activation
        i = sigma(i_x + i_h)
        f = sigma(f_x + f_h)
        g = tanh(g_x + g_h)
        delta_c = i * g
        c = f * c + delta_c
        i_m = sigma(i_x2 + i_m)
        f_m = sigma(f_x2 + f_m)
        g_m = tanh(g_x2 + g_m)
        delta_m = i_m * g_m
        m = f_m * m + delta_m
        memory = ops.concatenate([c, m], axis=self.channel_axis)
        o = sigma(o_x + o_h + self.convolve(memory, self.output_kernel))
        h = o * tanh(self.convolve(memory, self.fusion_kernel))
        return h, [h, c, m], (delta_c, delta_m)

    def recurrent_step(self, projection, states, recurrent_dropout_mask=None):
        """One ST-LSTM step given the input projection; `(h', [h', c', m'])`."""
        h, new_states, _ = self._step(
            projection, states, recurrent_dropout_mask
        )
        return h, new_states

    def recurrent_step_and_loss(
        self, projection, states, recurrent_dropout_mask=None
    ):
        """`recurrent_step` and, per sample, this step's decoupling term:
        the mean over channels of `|cos(A·Δc, A·Δm)|`, the cosine over
        each channel's pixels. `ConvRNN` adds `decoupling_weight` times
        its mean over steps and samples to the layer's losses in
        training."""
        h, new_states, (delta_c, delta_m) = self._step(
            projection, states, recurrent_dropout_mask
        )
        return h, new_states, self._decoupling_term(delta_c, delta_m)

    def _decoupling_term(self, delta_c, delta_m):
        adapted_c = self.convolve(delta_c, self.decoupling_kernel)
        adapted_m = self.convolve(delta_m, self.decoupling_kernel)
        # Pixels along one axis, channels along the other.
        spatial = (1, 2) if self.data_format == "channels_last" else (2, 3)
        dot = ops.sum(adapted_c * adapted_m, axis=spatial)
        norms = ops.sqrt(
            ops.sum(ops.square(adapted_c), axis=spatial)
            * ops.sum(ops.square(adapted_m), axis=spatial)
        )
        epsilon = keras.config.epsilon()
        cosine = dot / ops.maximum(norms, epsilon)
        return ops.mean(ops.abs(cosine), axis=-1)

    def get_config(self):
        return {
            **super().get_config(),
            "decoupling_weight": self.decoupling_weight,
        }


@_register
class CausalLSTM2DCell(_MemoryCell):
    __doc__ = same_geometry_cell_doc(
        "Causal LSTM cell (PredRNN++, Wang et al. 2018), 2D.",
        _CAUSAL_LSTM_MATH,
        _FORGET_ARG,
        ("h", "c", "m"),
        _cell_example("CausalLSTM2D", 3) + _PREDRNN_PP_EXAMPLE,
    )

    def __init__(
        self,
        filters,
        kernel_size,
        data_format=None,
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
        strides=1,
        padding="same",
        dilation_rate=1,
        **kwargs,
    ):
        super().__init__(**named_arguments(locals()), **kwargs)

    def _build_state_weights(self):
        self.cell_kernel = self._state_kernel("cell_kernel", 1, 3)
        self.memory_kernel = self._state_kernel("memory_kernel", 1, 3)
        self.cell_to_memory_kernel = self._state_kernel(
            "cell_to_memory_kernel", 1, 4
        )
        self.memory_output_kernel = self._state_kernel(
            "memory_output_kernel", 1, 1
        )
        self.fusion_kernel = self._state_kernel("fusion_kernel", 2, 1, (1, 1))

    def recurrent_step(self, projection, states, recurrent_dropout_mask=None):
        """One causal LSTM step given the input projection;
        `(h', [h', c', m'])`."""
        h, c, m = states
        h_in = self.masked_state(h, recurrent_dropout_mask)
        i_x, f_x, g_x, i_x2, f_x2, g_x2, o_x = self.split_gates(projection, 7)
        i_h, f_h, g_h, o_h = self.split_gates(
            self.convolve(h_in, self.recurrent_kernel), 4
        )
        i_c, f_c, g_c = self.split_gates(self.convolve(c, self.cell_kernel), 3)
        i_m, f_m, m_m = self.split_gates(
            self.convolve(m, self.memory_kernel), 3
        )
        sigma, tanh = self.recurrent_activation, self.activation
        i = sigma(i_x + i_h + i_c)
        f = sigma(f_x + f_h + f_c)
        g = tanh(g_x + g_h + g_c)
        c = f * c + i * g
        i_c2, g_c2, f_c2, o_c2 = self.split_gates(
            self.convolve(c, self.cell_to_memory_kernel), 4
        )
        i_m = sigma(i_x2 + i_m + i_c2)
        f_m = sigma(f_x2 + f_m + f_c2)
        g_m = tanh(g_x2 + g_c2)
        m = f_m * tanh(m_m) + i_m * g_m
        # tanh, as in the paper and the authors' code.
        o = tanh(o_x + o_h + o_c2 + self.convolve(m, self.memory_output_kernel))
        memory = ops.concatenate([c, m], axis=self.channel_axis)
        h = o * tanh(self.convolve(memory, self.fusion_kernel))
        return h, [h, c, m]


@_register
class GradientHighwayUnit2DCell(SameGeometryCell):
    __doc__ = same_geometry_cell_doc(
        "Gradient highway unit cell (GHU, PredRNN++, Wang et al. 2018), 2D.",
        _GHU_MATH,
        "",
        ("z",),
        _cell_example("GradientHighwayUnit2D", 1) + _PREDRNN_PP_EXAMPLE,
    )

    gate_count = 2
    state_names = ("z",)

    def __init__(
        self,
        filters,
        kernel_size,
        data_format=None,
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
        strides=1,
        padding="same",
        dilation_rate=1,
        **kwargs,
    ):
        super().__init__(**named_arguments(locals()), **kwargs)

    def recurrent_step(self, projection, states, recurrent_dropout_mask=None):
        """One highway step given the input projection; `(z', [z'])`."""
        z = states[0] if keras.tree.is_nested(states) else states
        z_in = self.masked_state(z, recurrent_dropout_mask)
        p_x, u_x = self.split_gates(projection, 2)
        p_z, u_z = self.split_gates(
            self.convolve(z_in, self.recurrent_kernel), 2
        )
        p = self.activation(p_x + p_z)
        u = self.recurrent_activation(u_x + u_z)
        z = u * p + (1.0 - u) * z
        return z, [z]


class _MemoryLayer(ConvRecurrentLayer):
    """A `ConvRNN` around one memory cell; the layer reads the cell's
    arguments."""

    unit_forget_bias = cell_argument("unit_forget_bias")


@_register
class SpatioTemporalLSTM2D(_MemoryLayer):
    __doc__ = same_geometry_layer_doc(
        "2D spatiotemporal LSTM layer (PredRNN, Wang et al. 2017).\n\n"
        "    `keras_convgru.ConvRNN` around a `SpatioTemporalLSTM2DCell`; for\n"
        "    PredRNN's stack of them, put the cells in one `ConvRNN`.",
        _ST_LSTM_MATH,
        _FORGET_ARG + _DECOUPLING_ARG,
        ("h", "c", "m"),
        _layer_example("SpatioTemporalLSTM2D"),
    )
    cell_class = SpatioTemporalLSTM2DCell

    def __init__(
        self,
        filters,
        kernel_size,
        data_format=None,
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
        decoupling_weight=0.0,
        strides=1,
        padding="same",
        dilation_rate=1,
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

    decoupling_weight = cell_argument("decoupling_weight")


@_register
class CausalLSTM2D(_MemoryLayer):
    __doc__ = same_geometry_layer_doc(
        "2D causal LSTM layer (PredRNN++, Wang et al. 2018).\n\n"
        "    `keras_convgru.ConvRNN` around a `CausalLSTM2DCell`; for\n"
        "    PredRNN++'s stack, put the cells in one `ConvRNN`.",
        _CAUSAL_LSTM_MATH,
        _FORGET_ARG,
        ("h", "c", "m"),
        _layer_example("CausalLSTM2D"),
    )
    cell_class = CausalLSTM2DCell

    def __init__(
        self,
        filters,
        kernel_size,
        data_format=None,
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
        strides=1,
        padding="same",
        dilation_rate=1,
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
