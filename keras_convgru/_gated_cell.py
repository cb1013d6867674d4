"""`GatedConvCell`: the base of the gated convolutional cells.

A gated cell fuses its gates: one input-to-state convolution with
`gate_count * filters` output channels (`kernel`), one state-to-state
convolution (`recurrent_kernel`), a bias, and optionally normalization
of each gate's block (`keras.layers.GroupNormalization` sublayers). The
families (`ConvGRUCell`, `ConvLSTMCell`, `TrajGRU2DCell`) supply their
gate count, their state names, their bias layout, their extra weights
and the gate math (`recurrent_step`, on `keras_convgru._gates`).
"""

import keras
from keras import ops

from keras_convgru._cell_base import ConvRNNCellBase
from keras_convgru._conv_ops import conv_output_length
from keras_convgru._validation import is_int
from keras_convgru._validation import standardize_padding
from keras_convgru._validation import standardize_tuple
from keras_convgru._validation import validate_normalization


class GatedConvCell(ConvRNNCellBase):
    """Weights, normalization and input projection of a gated cell."""

    #: Number of gates fused into the convolutions (GRU: 3, LSTM: 4).
    gate_count = None
    #: `"gru"` or `"lstm"`: the step that `keras_convgru._fused` computes
    #: for the family's cells (see `fused_obstacle`), or `None`.
    fused_kind = None
    #: Indices of the forget gates' blocks of `filters` channels in
    #: `bias`, which `unit_forget_bias=True` starts at 1.
    forget_blocks = ()
    #: The normalization sublayers a family may build, by attribute name.
    norm_sublayers = ("input_norm",)

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
        normalization=None,
        norm_groups=1,
        norm_epsilon=1e-3,
        **kwargs,
    ):
        super().__init__(
            rank,
            filters,
            data_format=data_format,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            seed=seed,
            **kwargs,
        )
        (
            self.normalization,
            self.norm_groups,
            self.norm_epsilon,
        ) = validate_normalization(
            normalization, norm_groups, norm_epsilon, self.filters
        )
        self.kernel_size = standardize_tuple(
            kernel_size, self.rank, "kernel_size"
        )
        self.strides = standardize_tuple(strides, self.rank, "strides")
        self.padding = standardize_padding(padding)
        self.dilation_rate = standardize_tuple(
            dilation_rate, self.rank, "dilation_rate"
        )
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                "Specifying `strides > 1` is not compatible with "
                "`dilation_rate > 1`. Please provide `strides=1` or "
                "`dilation_rate=1`. "
                f"Received: strides={self.strides} and "
                f"dilation_rate={self.dilation_rate}"
            )
        self.activation = keras.activations.get(activation)
        self.recurrent_activation = keras.activations.get(recurrent_activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(
            recurrent_initializer
        )
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = keras.regularizers.get(
            recurrent_regularizer
        )
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.recurrent_constraint = keras.constraints.get(recurrent_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        for name in self.norm_sublayers:
            setattr(self, name, None)

    # -- geometry ------------------------------------------------------------

    def state_spatial_shape(self, frame_shape):
        """Spatial size of the state for frames of `frame_shape`: the
        input-to-state convolution's output size.

        Entries may be ints, `None` or symbolic scalars. A `valid` kernel
        larger than a static frame is a `ValueError`.
        """
        self._check_frame_shape(frame_shape)
        return tuple(
            conv_output_length(n, k, s, self.padding, d)
            for n, k, s, d in zip(
                frame_shape, self.kernel_size, self.strides, self.dilation_rate
            )
        )

    def _check_frame_shape(self, frame_shape):
        if self.padding != "valid":
            return
        for n, k, d in zip(frame_shape, self.kernel_size, self.dilation_rate):
            if is_int(n) and n < (k - 1) * d + 1:
                raise ValueError(
                    f"With padding='valid', the frames must be at least as "
                    f"large as the (dilated) kernel. Received: "
                    f"kernel_size={self.kernel_size}, "
                    f"dilation_rate={self.dilation_rate} and frames of "
                    f"spatial shape {tuple(frame_shape)}."
                )

    # -- weights -------------------------------------------------------------

    @property
    def projection_channels(self):
        """Channels of `input_projection`'s output (all gates)."""
        return self.gate_count * self.filters

    def _recurrent_kernel_shape(self):
        return self.kernel_size + (self.filters, self.gate_count * self.filters)

    def _bias_shape(self):
        return (self.gate_count * self.filters,)

    def _make_bias_initializer(self):
        """`bias_initializer`, or with `unit_forget_bias` one that starts
        the forget gates' blocks (`forget_blocks`) at 1."""
        if not (self.forget_blocks and getattr(self, "unit_forget_bias", 0)):
            return self.bias_initializer
        filters, base = self.filters, self.bias_initializer
        # Runs of blocks: (is a forget gate, number of blocks), so that the
        # base initializer draws once per run of other gates.
        runs = []
        for block in range(self._bias_shape()[-1] // filters):
            forget = block in self.forget_blocks
            if runs and runs[-1][0] == forget:
                runs[-1][1] += 1
            else:
                runs.append([forget, 1])

        def bias_initializer(shape, dtype=None):
            return ops.concatenate(
                [
                    ops.ones((n * filters,), dtype=dtype)
                    if forget
                    else base((n * filters,), dtype=dtype)
                    for forget, n in runs
                ]
            )

        return bias_initializer

    def input_bias(self):
        """The bias added to the input projection (or `None`)."""
        return self.bias if self.use_bias else None

    def _weight(self, name, shape, family="recurrent", initializer=None):
        """`add_weight` with the initializer, regularizer and constraint of
        `family` (`"kernel"`, `"recurrent"` or `"bias"`)."""
        return self.add_weight(
            name=name,
            shape=shape,
            initializer=initializer or getattr(self, f"{family}_initializer"),
            regularizer=getattr(self, f"{family}_regularizer"),
            constraint=getattr(self, f"{family}_constraint"),
        )

    def build(self, input_shape):
        self._read_input_shape(input_shape)
        gate_filters = self.gate_count * self.filters
        self.kernel = self._weight(
            "kernel",
            self.kernel_size + (self.input_channels, gate_filters),
            "kernel",
        )
        self.recurrent_kernel = self._weight(
            "recurrent_kernel", self._recurrent_kernel_shape()
        )
        self._build_state_weights()
        self.bias = None
        if self.use_bias:
            self.bias = self._weight(
                "bias",
                self._bias_shape(),
                "bias",
                initializer=self._make_bias_initializer(),
            )
        self._build_extra_weights()
        if self.normalization is not None:
            self._build_normalization()
        self.built = True

    def _build_state_weights(self):
        """A family's own kernels between `recurrent_kernel` and `bias`
        (the memory cells' kernels on their other states)."""

    def _build_extra_weights(self):
        """A family's own weights after `bias` (the LSTM's peepholes)."""

    # -- normalization -------------------------------------------------------

    def _make_norm(self, name, blocks):
        """A built `GroupNormalization` over `blocks` gate blocks.

        Each block of `filters` channels is normalized on its own (per
        sample, over the spatial axes and the block's channels, or over
        `norm_groups` groups of them), so `blocks` fused gates need
        `blocks * groups` groups. Keras's layer keeps the statistics in
        float32 under mixed precision.
        """
        groups = self.norm_groups if self.normalization == "group" else 1
        channels = blocks * self.filters
        norm = keras.layers.GroupNormalization(
            groups=blocks * groups,
            axis=self.channel_axis,
            epsilon=self.norm_epsilon,
            name=name,
            dtype=self.dtype_policy,
        )
        norm.build(self.step_shape(None, (None,) * self.rank, channels))
        return norm

    def _build_normalization(self):
        """The normalization sublayers; the families add the recurrent ones."""
        self.input_norm = self._make_norm("input_norm", self.gate_count)

    @staticmethod
    def _normalized(norm, x):
        return x if norm is None else norm(x)

    def load_own_variables(self, store):
        # Keras assigns the saved weights one at a time: from a file whose
        # last weight does not fit (another `reset_after`, say), the first
        # ones would be overwritten before the error. Check every shape
        # first, so that a failed load leaves the cell as it was.
        sublayer_weights = {
            id(w)
            for name in self.norm_sublayers
            if getattr(self, name, None) is not None
            for w in getattr(self, name).weights
        }
        weights = [w for w in self.weights if id(w) not in sublayer_weights]
        if len(store.keys()) == len(weights):
            for i, weight in enumerate(weights):
                saved = tuple(store[f"{i}"].shape)
                if saved != tuple(weight.shape):
                    raise ValueError(
                        f"Cannot load the weights of layer '{self.name}': "
                        f"its `{weight.name}` has shape "
                        f"{tuple(weight.shape)}, the saved weight {i} has "
                        f"shape {saved}. The layer is left unchanged."
                    )
        super().load_own_variables(store)

    # -- the input projection ------------------------------------------------

    def input_projection(self, inputs):
        """Input-to-state convolution of all gates, plus the input bias.

        With `normalization`, each gate's block of the convolution is
        normalized (per frame) before the bias is added.

        Args:
            inputs: frames `(n, *spatial, channels)` (channels_last) or
                `(n, channels, *spatial)`; `n` may be batch * time.

        Returns:
            `(n, *state_spatial, gate_count * filters)` (or channels_first).
        """
        projection = self.convolve(
            inputs,
            self.kernel,
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
        )
        # Per frame: the projection of `batch * time` frames is normalized
        # frame by frame, exactly as step by step.
        projection = self._normalized(self.input_norm, projection)
        return self.add_channel_bias(projection, self.input_bias())

    # -- the fused recurrence ------------------------------------------------

    def fused_obstacle(self):
        """Why `keras_convgru._fused` cannot compute this cell's sequences
        (a sentence), or `None` when it can (see
        `ConvRNN.uses_fused_recurrence`)."""
        if self.fused_kind is None:
            return (
                f"it covers ConvGRU and ConvLSTM cells, not "
                f"{type(self).__name__}"
            )
        # The family's class: the one that says what `_fused` computes.
        family = next(k for k in type(self).__mro__ if "fused_kind" in vars(k))
        if type(self).recurrent_step is not family.recurrent_step:
            return "the cell overrides `recurrent_step`"
        if self.activation is not keras.activations.tanh:
            return "`activation` is not 'tanh'"
        if self.recurrent_activation is not keras.activations.sigmoid:
            return "`recurrent_activation` is not 'sigmoid'"
        if self.normalization is not None:
            return f"normalization={self.normalization!r}"
        return None

    def get_config(self):
        serialize = {
            "activation": keras.activations.serialize,
            "initializer": keras.initializers.serialize,
            "regularizer": keras.regularizers.serialize,
            "constraint": keras.constraints.serialize,
        }
        config = {
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "dilation_rate": self.dilation_rate,
            "activation": serialize["activation"](self.activation),
            "recurrent_activation": serialize["activation"](
                self.recurrent_activation
            ),
            "use_bias": self.use_bias,
        }
        for part in ("initializer", "regularizer", "constraint"):
            for family in ("kernel", "recurrent", "bias"):
                name = f"{family}_{part}"
                config[name] = serialize[part](getattr(self, name))
        config.update(
            normalization=self.normalization,
            norm_groups=self.norm_groups,
            norm_epsilon=self.norm_epsilon,
        )
        return {**super().get_config(), **config}


#: The ConvGRU/ConvLSTM cells' normalization arguments, which the cells
#: of fixed geometry do not take.
_NORMALIZATION_ARGUMENTS = ("normalization", "norm_groups", "norm_epsilon")


class SameGeometryCell(GatedConvCell):
    """A 2D gated cell whose every convolution is stride 1 and `"same"`.

    Its frames and its states share one size (TrajGRU warps the state
    along flows computed from the frame; the memory cells convolve
    frames, states and memories alike). `strides`, `padding` and
    `dilation_rate` are accepted with those values only, and the
    normalization arguments not at all: a `ValueError` names them.
    """

    def __init__(
        self,
        filters,
        kernel_size,
        *,
        strides=1,
        padding="same",
        dilation_rate=1,
        **kwargs,
    ):
        name = type(self).__name__
        for argument in _NORMALIZATION_ARGUMENTS:
            if argument in kwargs:
                raise ValueError(
                    f"{name} does not take `{argument}`. Received: "
                    f"{argument}={kwargs[argument]!r}"
                )
        super().__init__(
            2,
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            dilation_rate=dilation_rate,
            **kwargs,
        )
        for argument, value in (
            ("strides", self.strides),
            ("dilation_rate", self.dilation_rate),
        ):
            if value != (1, 1):
                raise ValueError(
                    f"Argument `{argument}` of a {name} must be 1: the "
                    "frames and the state share one size. "
                    f"Received: {argument}={value}"
                )
        if self.padding != "same":
            raise ValueError(
                f"Argument `padding` of a {name} must be 'same': the "
                "frames and the state share one size. "
                f"Received: padding={padding!r}"
            )

    def get_config(self):
        config = super().get_config()
        fixed = ("rank", "strides", "padding", "dilation_rate")
        for key in fixed + _NORMALIZATION_ARGUMENTS:
            config.pop(key, None)
        return config
