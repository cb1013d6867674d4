"""Trajectory GRU (Shi et al. 2017): a ConvGRU with learned, moving links.

A ConvGRU's state-to-state connections are a fixed local kernel: a 3x3
kernel only carries what moved one pixel per step. The TrajGRU of "Deep
Learning for Precipitation Nowcasting: A Benchmark and A New Model" (Shi
et al., NeurIPS 2017) learns, at every step, `links` flow fields from the
input and the state, samples the state along each of them (bilinear
warping) and mixes the warped states with a 1x1 convolution, so its
recurrent connections follow the motion.
"""

import keras
from keras import ops

from keras_convgru import _gates
from keras_convgru._cell_base import named_arguments
from keras_convgru._docs import LAYER_ARGS
from keras_convgru._gated_cell import SameGeometryCell
from keras_convgru._layer_base import ConvRecurrentLayer
from keras_convgru._layer_base import cell_argument
from keras_convgru._validation import standardize_tuple
from keras_convgru._validation import validate_positive_int

_register = keras.saving.register_keras_serializable(package="keras_convgru")


# --------------------------------------------------------------------------
# Bilinear warping
# --------------------------------------------------------------------------


def _bilinear_warp(state, flows, links):
    """Samples `state` along each of `links` flow fields (channels last).

    Args:
        state: `(n, rows, cols, channels)`.
        flows: `(n, rows, cols, 2 * links)`; channels `(2l, 2l + 1)` are
            `(Δy_l, Δx_l)`, in pixels.
        links: int, the number of flow fields.

    Returns:
        `(n, rows, cols, links * channels)`, link-major: channels
        `[l * channels, (l + 1) * channels)` are `state` sampled at
        `(y + Δy_l(y, x), x + Δx_l(y, x))`, every neighbour outside the
        frame read as zero.

    All links and all four neighbours of every sample are one gather from
    the state flattened to `(n * rows * cols, channels)`; a neighbour
    outside the frame gets weight zero (its index is clipped into the
    frame, so the gather stays in bounds). The coordinates and weights are
    computed in float32 (float64 for float64 flows) whatever the state's
    dtype (a float16 coordinate has a resolution of 1/16 pixel at row
    100), then cast to it.
    """
    shape = ops.shape(state)
    n, rows, cols, channels = shape[0], shape[1], shape[2], shape[3]
    dtype = keras.backend.standardize_dtype(flows.dtype)
    dtype = "float64" if dtype == "float64" else "float32"
    flows = ops.reshape(ops.cast(flows, dtype), (n, rows, cols, links, 2))
    rows_f = ops.cast(rows, dtype)
    cols_f = ops.cast(cols, dtype)
    y = ops.reshape(ops.cast(ops.arange(rows), dtype), (rows, 1, 1))
    x = ops.reshape(ops.cast(ops.arange(cols), dtype), (1, cols, 1))
    # Keras's torch `maximum`, `minimum` and `floor` return float32 for
    # float64 tensors; `where` and casts keep the dtype.
    one = ops.ones((), dtype)

    def clip(p, upper):
        # Points further than one pixel outside the frame sample zeros;
        # the clip changes neither the samples nor their gradients and
        # keeps huge flows from overflowing the integer cast.
        p = ops.where(p < -one, -one, p)
        return ops.where(p > upper, upper, p)

    def neighbours(p, size):
        """Indices and weights of the two neighbours along one axis,
        `(n, rows, cols, links, 2)`; weight 0 outside `[0, size)`."""
        # p >= -1, so truncating p + 1 toward zero is floor(p) + 1.
        lower = ops.cast(p + one, "int32") - 1
        fraction = p - ops.cast(lower, dtype)
        coords = ops.stack([lower, lower + 1], axis=-1)
        inside = ops.logical_and(coords >= 0, coords < size)
        weights = ops.stack([one - fraction, fraction], axis=-1)
        weights = ops.where(inside, weights, ops.zeros_like(weights))
        index = ops.minimum(ops.maximum(coords, 0), size - 1)
        return index, weights

    iy, wy = neighbours(clip(y + flows[..., 0], rows_f), rows)
    ix, wx = neighbours(clip(x + flows[..., 1], cols_f), cols)
    # (n, rows, cols, links, 2, 2): neighbour (i, j) is (y0 + i, x0 + j).
    pixels = rows * cols
    base = ops.reshape(
        ops.arange(n, dtype="int32") * pixels, (n, 1, 1, 1, 1, 1)
    )
    index = base + iy[..., :, None] * cols + ix[..., None, :]
    weights = ops.cast(wy[..., :, None] * wx[..., None, :], state.dtype)
    table = ops.reshape(state, (n * pixels, channels))
    # The reshape is a no-op, except for an empty batch on JAX, whose
    # `take` from an empty table returns the table's shape.
    gathered = ops.reshape(
        ops.take(table, index, axis=0),
        (n, rows, cols, links, 2, 2, channels),
    )
    warped = ops.sum(gathered * weights[..., None], axis=(4, 5))
    return ops.reshape(warped, (n, rows, cols, links * channels))


# --------------------------------------------------------------------------
# Docstrings
# --------------------------------------------------------------------------

_TRAJ_MATH = """
    With `*` a convolution, `⊙` an elementwise product, `σ` the
    `recurrent_activation`, `tanh` the `activation` and `L` = `links`:

    ```
    f      = flow_activation(Fx * x + Fh * h + bf)
    flows  = Ff * f + bff
    (Δy_l, Δx_l) = flows channels (2l, 2l + 1),  l = 0 .. links - 1
    h_l(y, x) = bilinear sample of h at (y + Δy_l(y, x), x + Δx_l(y, x))
    hh     = U * concat(h_0, ..., h_{L-1}) + bh
    xh     = W * x + bx
    z = σ(xh_z + hh_z),  r = σ(xh_r + hh_r),  h̃ = tanh(xh_h + r ⊙ hh_h)
    h' = z ⊙ h + (1 − z) ⊙ h̃
    ```

    The flow generator's convolutions `Fx`, `Fh` and `Ff` have
    `flow_kernel_size` windows; `f` has `flow_filters` channels and
    `flows` has `2 * links`. The samples `h_l` read zero outside the
    frame. `U` is a 1x1 convolution from the `links * filters` channels of
    the warped states to `3 * filters`; `W` has `kernel_size` windows.

    Gate order z, r, h and the update are `ConvGRU2D`'s with
    `reset_after=True`. All convolutions have stride 1 and `"same"`
    padding, so the frames and the state have one size. Bilinear sampling
    at a point `(py, px)`: with `y0 = floor(py)`, `x0 = floor(px)`,
    `a = py − y0`, `b = px − x0`, the sample is
    `(1−a)(1−b) h[y0, x0] + (1−a) b h[y0, x0+1] + a (1−b) h[y0+1, x0] +
    a b h[y0+1, x0+1]`, each neighbour outside the frame read as zero.
    Warping is differentiable with respect to the state and the flows.

    With the default `flow_kernel_initializer="zeros"` (and zero biases)
    every flow is zero at first: every link is the identity warp, and the
    cell starts as a ConvGRU whose state-to-state kernel is the 1x1
    convolution `U_0 + ... + U_{L-1}` (`U_l` the rows of `U` that read
    `h_l`).

    What depends on the frame only, `W * x + bx` and `Fx * x + bf`, is the
    *input projection* (`3 * filters + flow_filters` channels), which
    `keras_convgru.ConvRNN` computes for all time steps at once, before
    its time loop. The warps of all links are one batched gather.

    Weights (`channels_last`; `k` is `flow_kernel_size`):

    | weight | shape |
    | --- | --- |
    | `kernel` (W) | `kernel_size + (in_channels, 3 * filters)` |
    | `recurrent_kernel` (U) | `(1, 1, links * filters, 3 * filters)` |
    | `bias` | `(2, 3 * filters)`, rows `bx`, `bh` |
    | `flow_input_kernel` (Fx) | `(k, k, in_channels, flow_filters)` |
    | `flow_state_kernel` (Fh) | `(k, k, filters, flow_filters)` |
    | `flow_bias` (bf) | `(flow_filters,)` |
    | `flow_kernel` (Ff) | `(k, k, flow_filters, 2 * links)` |
    | `flow_output_bias` (bff) | `(2 * links,)` |

    The input channels of `recurrent_kernel` are link-major: channels
    `[l * filters, (l + 1) * filters)` read `h_l`. The weight layouts do
    not change with `data_format`. With `use_bias=False` there are no
    `bias`, `flow_bias` and `flow_output_bias`.
"""

_TRAJ_CELL_ARGS = """
        filters: int, the number of output channels (the state's channels).
        kernel_size: int or 2-tuple of ints, the window of the
            input-to-state convolution `W`.
        links: int (default 5), the number of flow fields `L`: each state
            pixel is connected to `L` learned, moving locations.
        flow_filters: int (default 32), channels of the flow generator's
            hidden feature map `f`.
        flow_kernel_size: int or 2-tuple of ints (default 5), the window
            of the flow generator's convolutions `Fx`, `Fh` and `Ff`.
        data_format: `"channels_last"` or `"channels_first"`; defaults to
            `keras.config.image_data_format()`. In both the flows'
            channels are `(Δy_0, Δx_0, Δy_1, ...)`.
        activation: activation of the candidate state and output (default
            `"tanh"`).
        recurrent_activation: activation of the gates (default
            `"sigmoid"`).
        flow_activation: activation of the flow generator's hidden
            feature map (default `"leaky_relu"`, slope 0.2 as in the
            paper).
        use_bias: bool, whether to use biases (default `True`).
        kernel_initializer: initializer of `kernel` and
            `flow_input_kernel`, the weights on the input (default
            `"glorot_uniform"`).
        recurrent_initializer: initializer of `recurrent_kernel` and
            `flow_state_kernel`, the weights on the state (default
            `"orthogonal"`).
        bias_initializer: initializer of `bias`, `flow_bias` and
            `flow_output_bias` (default `"zeros"`).
        flow_kernel_initializer: initializer of `flow_kernel` (default
            `"zeros"`: every link starts as the identity warp).
        kernel_regularizer: regularizer of `kernel` and
            `flow_input_kernel`.
        recurrent_regularizer: regularizer of `recurrent_kernel` and
            `flow_state_kernel`.
        bias_regularizer: regularizer of the biases.
        flow_kernel_regularizer: regularizer of `flow_kernel`.
        kernel_constraint: constraint of `kernel` and
            `flow_input_kernel`.
        recurrent_constraint: constraint of `recurrent_kernel` and
            `flow_state_kernel`.
        bias_constraint: constraint of the biases.
        flow_kernel_constraint: constraint of `flow_kernel`.
        dropout: float in [0, 1], fraction of the input channels dropped
            before the input projection (`W * x` and `Fx * x`; training
            only, one mask per sequence in `ConvRNN`).
        recurrent_dropout: float in [0, 1], fraction of the state dropped
            where it enters the state-to-state path: the flow generator
            (`Fh * h`) and the warped links `h_l` are computed from the
            dropped-out state; the update `z ⊙ h` uses the full state
            (training only).
        seed: int, random seed for dropout.
        strides: must be 1 (the default): the frames and the state share
            one size. Any other value raises a `ValueError`.
        padding: must be `"same"` (the default), for the same reason.
        dilation_rate: must be 1 (the default)."""


# --------------------------------------------------------------------------
# The cell
# --------------------------------------------------------------------------


# Arguments of the base cell that a TrajGRU does not have.


@_register
class TrajGRU2DCell(SameGeometryCell):
    __doc__ = (
        """Cell of a trajectory GRU (TrajGRU, Shi et al. 2017), 2D.

    A ConvGRU whose state-to-state connections follow `links` flow fields
    that it learns from the input and the state at every step, instead of
    a fixed kernel: the state is warped along each flow (bilinear
    sampling) and the warped states are mixed by a 1x1 convolution. Use it
    in `keras_convgru.ConvRNN` (`TrajGRU2D` is exactly that), alone or
    stacked with ConvGRU and ConvLSTM cells, or in a plain
    `keras.layers.RNN`.
"""
        + _TRAJ_MATH
        + """
    Args:"""
        + _TRAJ_CELL_ARGS
        + """
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: one frame `(batch, rows, cols, channels)` (or channels
            first).
        states: list with one state tensor `(batch, rows, cols, filters)`.
        training: Python boolean, whether dropout is active.

    Input shape:
        `(batch, rows, cols, channels)` (`channels_last`) or
        `(batch, channels, rows, cols)` (`channels_first`).

    Output shape:
        `(output, [new_state])`, both `(batch, rows, cols, filters)` (or
        channels first): the frames and the state have one size.

    Example:

    >>> import numpy as np
    >>> import keras
    >>> import keras_convgru as kc
    >>> cell = kc.TrajGRU2DCell(4, 3, links=3, flow_filters=8)
    >>> layer = kc.ConvRNN(cell, return_sequences=True)
    >>> tuple(layer(np.zeros((2, 5, 16, 16, 3), "float32")).shape)
    (2, 5, 16, 16, 4)
    """
    )

    gate_count = 3
    state_names = ("h",)

    def __init__(
        self,
        filters,
        kernel_size,
        links=5,
        flow_filters=32,
        flow_kernel_size=5,
        data_format=None,
        activation="tanh",
        recurrent_activation="sigmoid",
        flow_activation="leaky_relu",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        flow_kernel_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        flow_kernel_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        flow_kernel_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        *,
        strides=1,
        padding="same",
        dilation_rate=1,
        **kwargs,
    ):
        super().__init__(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            data_format=data_format,
            dilation_rate=dilation_rate,
            activation=activation,
            recurrent_activation=recurrent_activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            seed=seed,
            **kwargs,
        )
        self.links = validate_positive_int(links, "links")
        self.flow_filters = validate_positive_int(flow_filters, "flow_filters")
        self.flow_kernel_size = standardize_tuple(
            flow_kernel_size, 2, "flow_kernel_size"
        )
        self.flow_activation = keras.activations.get(flow_activation)
        self.flow_kernel_initializer = keras.initializers.get(
            flow_kernel_initializer
        )
        self.flow_kernel_regularizer = keras.regularizers.get(
            flow_kernel_regularizer
        )
        self.flow_kernel_constraint = keras.constraints.get(
            flow_kernel_constraint
        )

    @property
    def projection_channels(self):
        """Channels of `input_projection`: `3 * filters + flow_filters`."""
        return self.gate_count * self.filters + self.flow_filters

    # -- weights -------------------------------------------------------------

    def _recurrent_kernel_shape(self):
        return (1, 1, self.links * self.filters, 3 * self.filters)

    def _bias_shape(self):
        return (2, 3 * self.filters)

    def input_bias(self):
        return self.bias[0] if self.use_bias else None

    def _build_extra_weights(self):
        flow_k = self.flow_kernel_size
        self.flow_input_kernel = self._weight(
            "flow_input_kernel",
            flow_k + (self.input_channels, self.flow_filters),
            "kernel",
        )
        self.flow_state_kernel = self._weight(
            "flow_state_kernel", flow_k + (self.filters, self.flow_filters)
        )
        self.flow_bias = None
        if self.use_bias:
            self.flow_bias = self._weight(
                "flow_bias", (self.flow_filters,), "bias"
            )
        self.flow_kernel = self._weight(
            "flow_kernel",
            flow_k + (self.flow_filters, 2 * self.links),
            "flow_kernel",
        )
        self.flow_output_bias = None
        if self.use_bias:
            self.flow_output_bias = self._weight(
                "flow_output_bias", (2 * self.links,), "bias"
            )

    # -- the two parts of a step ---------------------------------------------

    def input_projection(self, inputs):
        """Everything that depends on the frame only, for `n` frames.

        Args:
            inputs: frames `(n, rows, cols, channels)` (channels_last) or
                `(n, channels, rows, cols)`; `n` may be batch * time.

        Returns:
            `(n, rows, cols, projection_channels)` (or channels first):
            `W * x + bx` (`3 * filters` channels, gates z, r, h) followed
            by `Fx * x + bf` (`flow_filters` channels).
        """
        gates = super().input_projection(inputs)
        flow = self.add_channel_bias(
            self.convolve(inputs, self.flow_input_kernel), self.flow_bias
        )
        return ops.concatenate([gates, flow], axis=self.channel_axis)

    def _to_channels_last(self, x):
        if self.data_format == "channels_first":
            return ops.transpose(x, (0, 2, 3, 1))
        return x

    def _to_data_format(self, x):
        if self.data_format == "channels_first":
            return ops.transpose(x, (0, 3, 1, 2))
        return x

    def recurrent_step(self, projection, states, recurrent_dropout_mask=None):
        """One step given the input projection: the flows, the warps, the
        1x1 mixing and the gates.

        Args:
            projection: this step's `input_projection` `(batch, rows, cols,
                projection_channels)` (or channels first).
            states: `[h]`, `h` of shape `(batch, rows, cols, filters)` (or
                channels first).
            recurrent_dropout_mask: `None` or a tensor shaped like `h`; it
                multiplies `h` where the state enters the state-to-state
                path, i.e. the state that the flow generator reads
                (`Fh * h`) and that is warped into the links `h_l`. The
                update `h' = z ⊙ h + (1 − z) ⊙ h̃` uses the state itself.

        Returns:
            `(h', [h'])`.
        """
        h_tm1 = states[0] if keras.tree.is_nested(states) else states
        h_in = self.masked_state(h_tm1, recurrent_dropout_mask)
        f = self.filters
        x_gates, x_flow = ops.split(projection, [3 * f], axis=self.channel_axis)

        hidden = self.flow_activation(
            x_flow + self.convolve(h_in, self.flow_state_kernel)
        )
        flows = self.add_channel_bias(
            self.convolve(hidden, self.flow_kernel), self.flow_output_bias
        )
        # The warp and the 1x1 mixing run channels last (a gather over
        # pixels and one matrix product over all links).
        warped = _bilinear_warp(
            self._to_channels_last(h_in),
            self._to_channels_last(flows),
            self.links,
        )
        mixing = ops.reshape(self.recurrent_kernel, (self.links * f, 3 * f))
        # `einsum`, not `matmul`: Keras's torch `matmul` computes float64
        # in float32.
        recurrent = ops.einsum("nyxc,cd->nyxd", warped, mixing)
        if self.use_bias:
            recurrent = recurrent + self.bias[1]
        recurrent = self._to_data_format(recurrent)

        h, *_ = _gates.gru_reset_after(
            self.split_gates(x_gates, 3),
            self.split_gates(recurrent, 3),
            h_tm1,
            self.activation,
            self.recurrent_activation,
        )
        new_states = [h] if keras.tree.is_nested(states) else h
        return h, new_states

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "links": self.links,
                "flow_filters": self.flow_filters,
                "flow_kernel_size": self.flow_kernel_size,
                "flow_activation": keras.activations.serialize(
                    self.flow_activation
                ),
                "flow_kernel_initializer": keras.initializers.serialize(
                    self.flow_kernel_initializer
                ),
                "flow_kernel_regularizer": keras.regularizers.serialize(
                    self.flow_kernel_regularizer
                ),
                "flow_kernel_constraint": keras.constraints.serialize(
                    self.flow_kernel_constraint
                ),
            }
        )
        return config


# --------------------------------------------------------------------------
# The layer
# --------------------------------------------------------------------------


@_register
class TrajGRU2D(ConvRecurrentLayer):
    __doc__ = (
        """2D trajectory GRU layer (TrajGRU, Shi et al. 2017).

    A ConvGRU whose state-to-state connections follow the motion: at every
    step it learns `links` flow fields from the frame and the state, warps
    the state along each of them and mixes the warped states with a 1x1
    convolution. Where things move several pixels per frame (radar echoes,
    traffic, crowds), a ConvGRU's 3x3 state-to-state kernel cannot follow
    them; the TrajGRU's links can.

    The layer is `keras_convgru.ConvRNN` around a `TrajGRU2DCell`: it
    supports masks, `stateful`, `go_backwards`, `initial_state`, unknown
    frame sizes (`keras.Input((None, None, None, channels))`), stacking
    with other cells in `ConvRNN`, dropout and mixed precision, like
    `ConvGRU2D`. The input-to-state convolution and the input half of the
    flow generator run once over all time steps, before the time loop.
"""
        + _TRAJ_MATH
        + """
    Args:"""
        + _TRAJ_CELL_ARGS
        + LAYER_ARGS
        + """
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a tensor `(batch, time, rows, cols, channels)`.
        initial_state: list with one initial state tensor `[h]`,
            `(batch, rows, cols, filters)`. `None` means zeros.
        mask: boolean tensor `(batch, time)`; a masked step carries the
            state forward.
        training: Python boolean, whether dropout is active.

    Input shape:
        `(batch, time, rows, cols, channels)` (`channels_last`) or
        `(batch, time, channels, rows, cols)` (`channels_first`).

    Output shape:
        - `return_sequences=False`: `(batch, rows, cols, filters)`.
        - `return_sequences=True`: `(batch, time, rows, cols, filters)`.
        - `return_state=True`: `[output, h]` (as `keras.layers.GRU`
          returns them), `h` of shape `(batch, rows, cols, filters)`.

        With `channels_first` the channels come before the spatial axes.

    Example:

    >>> import numpy as np
    >>> import keras
    >>> import keras_convgru as kc
    >>> inputs = keras.Input((None, None, None, 1))
    >>> outputs = kc.TrajGRU2D(8, 3, links=5, return_sequences=True)(inputs)
    >>> model = keras.Model(inputs, outputs)
    >>> x = np.zeros((2, 5, 16, 16, 1), "float32")
    >>> tuple(model(x).shape)
    (2, 5, 16, 16, 8)
    """
    )

    cell_class = TrajGRU2DCell

    def __init__(
        self,
        filters,
        kernel_size,
        links=5,
        flow_filters=32,
        flow_kernel_size=5,
        data_format=None,
        activation="tanh",
        recurrent_activation="sigmoid",
        flow_activation="leaky_relu",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        flow_kernel_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        flow_kernel_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        flow_kernel_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        *,
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

    links = cell_argument("links")
    flow_filters = cell_argument("flow_filters")
    flow_kernel_size = cell_argument("flow_kernel_size")
    flow_activation = cell_argument("flow_activation")
    flow_kernel_initializer = cell_argument("flow_kernel_initializer")
    flow_kernel_regularizer = cell_argument("flow_kernel_regularizer")
    flow_kernel_constraint = cell_argument("flow_kernel_constraint")
