"""SA-ConvLSTM (Lin et al. 2020): a ConvLSTM with a self-attention memory.

A ConvLSTM step gives `ĥ` and `c'`; a self-attention memory module then
lets every position of the frame read every other position of `ĥ` and of
a memory `m` it keeps across steps, so the state reaches past the
kernel's window in one step. Attention costs memory and time quadratic in
the number of positions (docs/performance.md has the figures).
"""

import keras
from keras import ops

from keras_convgru import _gates
from keras_convgru._cell_base import named_arguments
from keras_convgru._docs import same_geometry_cell_doc
from keras_convgru._docs import same_geometry_layer_doc
from keras_convgru._gated_cell import SameGeometryCell
from keras_convgru._layer_base import ConvRecurrentLayer
from keras_convgru._layer_base import cell_argument
from keras_convgru._validation import validate_positive_int

_register = keras.saving.register_keras_serializable(package="keras_convgru")

_SA_MATH = """
    A ConvLSTM step (`kernel`, `recurrent_kernel`, `bias` exactly as
    `ConvLSTM2DCell`'s, gates `i, f, c, o`) gives `ĥ` and `c'`; then the
    self-attention memory module, with 1 x 1 convolutions (with biases),
    `N` = rows x cols positions and `d = attention_filters`:

    ```
    [q ; k_h ; v_h] = Wa * ĥ + ba                     # d, d, F channels
    [k_m ; v_m]     = Wam * m + bam                   # d, F channels
    Z_h(p) = Σ_p' softmax_p'(q(p) · k_h(p')) v_h(p')  # over the N positions
    Z_m(p) = Σ_p' softmax_p'(q(p) · k_m(p')) v_m(p')
    Z = Wz * [Z_h ; Z_m] + bz                         # 2F channels
    [a_i ; a_g ; a_o] = Wg * [Z ; ĥ] + bg             # F channels each
    m' = (1 − σ(a_i)) ⊙ m + σ(a_i) ⊙ tanh(a_g)
    h' = σ(a_o) ⊙ m'
    ```

    The softmax has no scaling. The states are `[h, c, m]`; the new `h'`
    (not `ĥ`) is the output and the next step's hidden state. `m` is the
    attention memory of this cell alone: it does not flow along a stack
    (unlike the spatiotemporal memory of `SpatioTemporalLSTM2DCell`).

    | weight (`F` = `filters`, `C` = input channels) | shape |
    | --- | --- |
    | `kernel` | `(k, k, C, 4F)` |
    | `recurrent_kernel` | `(k, k, F, 4F)` |
    | `bias` | `(4F,)` |
    | `attention_kernel` (Wa) | `(1, 1, F, 2d + F)` |
    | `attention_bias` (ba) | `(2d + F,)` |
    | `memory_attention_kernel` (Wam) | `(1, 1, F, d + F)` |
    | `memory_attention_bias` (bam) | `(d + F,)` |
    | `attention_output_kernel` (Wz) | `(1, 1, 2F, 2F)` |
    | `attention_output_bias` (bz) | `(2F,)` |
    | `memory_gate_kernel` (Wg), input `[Z ; ĥ]` | `(1, 1, 3F, 3F)` |
    | `memory_gate_bias` (bg) | `(3F,)` |

    Attention holds an `N x N` matrix per sample, step and head: `O(N²)`
    memory and time (a 32 x 32 frame has N = 1024 positions).
"""

_SA_ARGS = """
        attention_filters: int (default `max(1, filters // 4)`), `d`: the
            channels of the queries and keys.
        unit_forget_bias: bool (default `True`), start the forget gate's
            bias at 1."""


@_register
class SAConvLSTM2DCell(SameGeometryCell):
    __doc__ = same_geometry_cell_doc(
        "Self-attention ConvLSTM cell (SA-ConvLSTM, Lin et al. 2020), 2D.",
        _SA_MATH,
        _SA_ARGS,
        ("h", "c", "m"),
        """
    >>> cell = kc.SAConvLSTM2DCell(8, 3)
    >>> layer = kc.ConvRNN(cell, return_state=True)
    >>> outputs = layer(np.zeros((2, 5, 16, 16, 3), "float32"))
    >>> [tuple(t.shape) for t in outputs]
    [(2, 16, 16, 8), (2, 16, 16, 8), (2, 16, 16, 8), (2, 16, 16, 8)]""",
    )

    gate_count = 4
    state_names = ("h", "c", "m")
    forget_blocks = (1,)

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
        attention_filters=None,
        unit_forget_bias=True,
        strides=1,
        padding="same",
        dilation_rate=1,
        **kwargs,
    ):
        arguments = named_arguments(locals())
        del arguments["attention_filters"], arguments["unit_forget_bias"]
        super().__init__(**arguments, **kwargs)
        if attention_filters is None:
            attention_filters = max(1, self.filters // 4)
        self.attention_filters = validate_positive_int(
            attention_filters, "attention_filters"
        )
        self.unit_forget_bias = bool(unit_forget_bias)

    def _build_extra_weights(self):
        f, d = self.filters, self.attention_filters
        for name, in_channels, out_channels in (
            ("attention", f, 2 * d + f),
            ("memory_attention", f, d + f),
            ("attention_output", 2 * f, 2 * f),
            ("memory_gate", 3 * f, 3 * f),
        ):
            kernel = self._weight(
                f"{name}_kernel", (1, 1, in_channels, out_channels)
            )
            setattr(self, f"{name}_kernel", kernel)
            bias = None
            if self.use_bias:
                bias = self._weight(f"{name}_bias", (out_channels,), "bias")
            setattr(self, f"{name}_bias", bias)

    def _conv1x1(self, x, name):
        """`W * x + b` with the 1 x 1 kernel and bias `name`."""
        y = self.convolve(x, getattr(self, f"{name}_kernel"))
        return self.add_channel_bias(y, getattr(self, f"{name}_bias"))

    def _attend(self, query, keys, values):
        """`Σ_p' softmax_p'(q(p) · k(p')) v(p')` for every position `p`."""
        if self.data_format == "channels_first":
            query, keys, values = (
                ops.transpose(t, (0, 2, 3, 1)) for t in (query, keys, values)
            )
        shape = ops.shape(values)
        # -1 on the batch axis: it resolves for an empty batch too.
        positions = shape[1] * shape[2]
        flat = [
            ops.reshape(t, (-1, positions, t.shape[-1]))
            for t in (query, keys, values)
        ]
        query, keys, values = flat
        weights = ops.softmax(ops.einsum("npd,nqd->npq", query, keys), axis=-1)
        attended = ops.reshape(
            ops.einsum("npq,nqf->npf", weights, values), shape
        )
        if self.data_format == "channels_first":
            attended = ops.transpose(attended, (0, 3, 1, 2))
        return attended

    def recurrent_step(self, projection, states, recurrent_dropout_mask=None):
        """One SA-ConvLSTM step given the input projection;
        `(h', [h', c', m'])`."""
        h, c, m = states
        h_in = self.masked_state(h, recurrent_dropout_mask)
        recurrent = self.convolve(h_in, self.recurrent_kernel)
        h_hat, c, _ = _gates.lstm(
            self.split_gates(projection + recurrent, 4),
            c,
            self.activation,
            self.recurrent_activation,
        )
        d, axis = self.attention_filters, self.channel_axis
        q, k_h, v_h = ops.split(
            self._conv1x1(h_hat, "attention"), [d, 2 * d], axis=axis
        )
        k_m, v_m = ops.split(
            self._conv1x1(m, "memory_attention"), [d], axis=axis
        )
        z_h = self._attend(q, k_h, v_h)
        z_m = self._attend(q, k_m, v_m)
        z = self._conv1x1(
            ops.concatenate([z_h, z_m], axis=axis), "attention_output"
        )
        a_i, a_g, a_o = self.split_gates(
            self._conv1x1(
                ops.concatenate([z, h_hat], axis=axis), "memory_gate"
            ),
            3,
        )
        update = self.recurrent_activation(a_i)
        m = (1.0 - update) * m + update * self.activation(a_g)
        h = self.recurrent_activation(a_o) * m
        return h, [h, c, m]

    def get_config(self):
        return {
            **super().get_config(),
            "attention_filters": self.attention_filters,
            "unit_forget_bias": self.unit_forget_bias,
        }


@_register
class SAConvLSTM2D(ConvRecurrentLayer):
    __doc__ = same_geometry_layer_doc(
        "2D self-attention ConvLSTM layer (SA-ConvLSTM, Lin et al. 2020).\n\n"
        "    `keras_convgru.ConvRNN` around a `SAConvLSTM2DCell`.",
        _SA_MATH,
        _SA_ARGS,
        ("h", "c", "m"),
        """
    >>> inputs = keras.Input((None, None, None, 1))
    >>> outputs = kc.SAConvLSTM2D(8, 3, return_sequences=True)(inputs)
    >>> model = keras.Model(inputs, outputs)
    >>> tuple(model(np.zeros((2, 5, 16, 16, 1), "float32")).shape)
    (2, 5, 16, 16, 8)""",
    )
    cell_class = SAConvLSTM2DCell

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
        attention_filters=None,
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

    attention_filters = cell_argument("attention_filters")
    unit_forget_bias = cell_argument("unit_forget_bias")
