"""Shared convolution helpers and the base class of every keras_convgru cell.

Everything that the GRU and LSTM families have in common lives here once:
argument validation, the weight shapes, the input-to-state convolution (the
*input projection*), the state-to-state convolution, the spatial size of the
state, dropout masks and the initial state. The families only supply their
gate count, their bias layout and the gate math (`recurrent_step`).
"""

import numbers

import keras
from keras import ops

from keras_convgru._keras_internals import DropoutRNNCell

_PADDINGS = ("valid", "same")
_DATA_FORMATS = ("channels_last", "channels_first")
_NORMALIZATIONS = (None, "layer", "group")


# --------------------------------------------------------------------------
# Argument validation (mirrors keras.layers' own checks, with public APIs only)
# --------------------------------------------------------------------------


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def validate_rank(rank):
    if not _is_int(rank):
        raise TypeError(
            f"Argument `rank` must be an integer. Received: rank={rank!r}"
        )
    if rank not in (1, 2, 3):
        raise ValueError(
            "Argument `rank` must be 1, 2 or 3 (the number of spatial "
            f"dimensions). Received: rank={rank}"
        )
    return int(rank)


def validate_filters(filters):
    if not _is_int(filters):
        raise TypeError(
            "Argument `filters` must be a positive integer. "
            f"Received: filters={filters!r}"
        )
    if filters <= 0:
        raise ValueError(
            "Argument `filters` must be a positive integer. "
            f"Received: filters={filters}"
        )
    return int(filters)


def standardize_tuple(value, rank, name):
    """Turns an int or a sequence of ints into a tuple of `rank` ints >= 1."""
    if _is_int(value):
        values = (int(value),) * rank
    elif isinstance(value, (list, tuple)):
        if len(value) != rank:
            raise ValueError(
                f"Argument `{name}` must be an integer or a tuple of {rank} "
                f"integers (one per spatial dimension). "
                f"Received: {name}={value!r}"
            )
        if not all(_is_int(v) for v in value):
            raise TypeError(
                f"Argument `{name}` must contain only integers. "
                f"Received: {name}={value!r}"
            )
        values = tuple(int(v) for v in value)
    else:
        raise TypeError(
            f"Argument `{name}` must be an integer or a tuple of {rank} "
            f"integers. Received: {name}={value!r}"
        )
    if any(v < 1 for v in values):
        raise ValueError(
            f"Argument `{name}` must contain only positive integers. "
            f"Received: {name}={value!r}"
        )
    return values


def standardize_padding(padding):
    if not isinstance(padding, str) or padding.lower() not in _PADDINGS:
        raise ValueError(
            "Argument `padding` must be one of 'valid' or 'same'. "
            f"Received: padding={padding!r}"
        )
    return padding.lower()


def standardize_data_format(data_format):
    if data_format is None:
        return keras.config.image_data_format()
    if not isinstance(data_format, str) or (
        data_format.lower() not in _DATA_FORMATS
    ):
        raise ValueError(
            "Argument `data_format` must be one of 'channels_last' or "
            f"'channels_first'. Received: data_format={data_format!r}"
        )
    return data_format.lower()


def validate_rate(rate, name):
    if not isinstance(rate, numbers.Real) or isinstance(rate, bool):
        raise TypeError(
            f"Argument `{name}` must be a float between 0 and 1. "
            f"Received: {name}={rate!r}"
        )
    if not 0.0 <= rate <= 1.0:
        raise ValueError(
            f"Argument `{name}` must be between 0 and 1. "
            f"Received: {name}={rate}"
        )
    return float(rate)


def validate_normalization(normalization, norm_groups, norm_epsilon, filters):
    """`normalization`, `norm_groups` and `norm_epsilon`, checked."""
    if normalization not in _NORMALIZATIONS:
        raise ValueError(
            "Argument `normalization` must be one of None, 'layer' or "
            f"'group'. Received: normalization={normalization!r}"
        )
    if not _is_int(norm_groups):
        raise TypeError(
            "Argument `norm_groups` must be a positive integer. "
            f"Received: norm_groups={norm_groups!r}"
        )
    if norm_groups <= 0:
        raise ValueError(
            "Argument `norm_groups` must be a positive integer. "
            f"Received: norm_groups={norm_groups}"
        )
    if normalization == "group" and filters % norm_groups:
        raise ValueError(
            "Argument `norm_groups` must divide `filters` (each gate's "
            "block of `filters` channels is split into `norm_groups` "
            f"groups). Received: norm_groups={norm_groups} and "
            f"filters={filters}"
        )
    if (
        not isinstance(norm_epsilon, numbers.Real)
        or isinstance(norm_epsilon, bool)
        or not norm_epsilon > 0
    ):
        raise ValueError(
            "Argument `norm_epsilon` must be a positive float. "
            f"Received: norm_epsilon={norm_epsilon!r}"
        )
    return normalization, int(norm_groups), float(norm_epsilon)


def conv_output_length(length, kernel_size, stride, padding, dilation):
    """Output size of one spatial axis of a convolution.

    Works on Python ints, `None` (unknown size) and symbolic scalars (a
    dynamic frame size inside a traced function) alike.
    """
    if length is None:
        return None
    if padding == "same":
        return (length + stride - 1) // stride
    effective_kernel = (kernel_size - 1) * dilation + 1
    return (length - effective_kernel) // stride + 1


# --------------------------------------------------------------------------
# The base cell
# --------------------------------------------------------------------------


class ConvRNNCellBase(keras.layers.Layer, DropoutRNNCell):
    """Machinery shared by the ConvGRU and ConvLSTM cells (not public).

    A cell is two pure functions of their arguments and the weights:

    * `input_projection(inputs)`: the input-to-state convolution of all
      gates at once (`projection_channels` output channels), plus the input
      bias. It does not depend on the state, so `ConvRNN` can run it once
      over every time step before the time loop.
    * `recurrent_step(projection, states, recurrent_dropout_mask=None)`:
      the state-to-state convolution and the gate math, the only work left
      inside the loop. The recurrent dropout mask, when there is one, is an
      argument like the others.

    `ConvRNN` drives these two itself, with dropout masks it draws once per
    sequence before its loop. `call(inputs, states, training)` composes
    them for a plain `keras.layers.RNN`, which draws the masks once per
    sequence through Keras's `DropoutRNNCell` (see `_keras_internals`).
    """

    # Number of gates fused into the convolutions (GRU: 3, LSTM: 4).
    gate_count = None
    # Number of state tensors (GRU: 1, LSTM: 2).
    _num_states = None

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
        super().__init__(**kwargs)
        self.rank = validate_rank(rank)
        self.filters = validate_filters(filters)
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
        self.data_format = standardize_data_format(data_format)
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
        self.dropout = validate_rate(dropout, "dropout")
        self.recurrent_dropout = validate_rate(
            recurrent_dropout, "recurrent_dropout"
        )
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed=seed)

        self.state_size = (
            self.filters
            if self._num_states == 1
            else [self.filters] * self._num_states
        )
        self.output_size = self.filters
        self.input_spec = keras.layers.InputSpec(ndim=self.rank + 2)

        self.input_channels = None
        self.input_spatial_shape = (None,) * self.rank
        self.input_norm = None

    # -- layout --------------------------------------------------------------

    @property
    def channel_axis(self):
        """Axis of the channels in a step tensor `(batch, ...)`."""
        return -1 if self.data_format == "channels_last" else 1

    def _spatial(self, shape):
        """The spatial part of a step shape `(batch, ...)`."""
        if self.data_format == "channels_last":
            return tuple(shape[1:-1])
        return tuple(shape[2:])

    def _step_shape(self, batch, spatial, channels):
        if self.data_format == "channels_last":
            return (batch, *spatial, channels)
        return (batch, channels, *spatial)

    def state_spatial_shape(self, input_spatial_shape):
        """Spatial size of the state for frames of `input_spatial_shape`.

        The state has the size of the input-to-state convolution's output.
        Entries may be ints, `None` or symbolic scalars.
        """
        return tuple(
            conv_output_length(n, k, s, self.padding, d)
            for n, k, s, d in zip(
                input_spatial_shape,
                self.kernel_size,
                self.strides,
                self.dilation_rate,
            )
        )

    def _masked_state(self, state, recurrent_dropout_mask):
        """The state that enters the state-to-state convolution."""
        if recurrent_dropout_mask is None:
            return state
        return state * recurrent_dropout_mask

    def _check_frame_size(self, spatial, where):
        """A `valid` kernel larger than a (static) frame is an error."""
        if self.padding != "valid":
            return
        for n, k, d in zip(spatial, self.kernel_size, self.dilation_rate):
            if _is_int(n) and n < (k - 1) * d + 1:
                raise ValueError(
                    f"With padding='valid', the frames must be at least as "
                    f"large as the (dilated) kernel. Received: "
                    f"kernel_size={self.kernel_size}, "
                    f"dilation_rate={self.dilation_rate} and frames of "
                    f"spatial shape {tuple(spatial)} ({where})."
                )

    # -- weights -------------------------------------------------------------

    def _bias_shape(self):
        return (self.gate_count * self.filters,)

    def _make_bias_initializer(self):
        return self.bias_initializer

    def input_bias(self):
        """The bias added to the input projection (or `None`)."""
        return self.bias if self.use_bias else None

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) == 2:
            # `(batch, channels)`: what `keras.layers.StackedRNNCells` passes
            # to the cells after the first; the frame size stays unknown.
            batch, channels = input_shape
            input_shape = self._step_shape(batch, (None,) * self.rank, channels)
        if len(input_shape) != self.rank + 2:
            raise ValueError(
                f"{self.__class__.__name__} (rank={self.rank}) expects step "
                f"inputs of rank {self.rank + 2} (batch, "
                f"{self.rank} spatial dimensions, channels). Received: "
                f"input_shape={input_shape}"
            )
        channels = input_shape[self.channel_axis]
        if channels is None:
            raise ValueError(
                "The channel dimension of the inputs must be defined. "
                f"Received: input_shape={input_shape} with "
                f"data_format='{self.data_format}'"
            )
        self.input_channels = int(channels)
        self.input_spatial_shape = self._spatial(input_shape)
        self._check_frame_size(self.input_spatial_shape, "at build time")

        gate_filters = self.gate_count * self.filters
        self.kernel = self.add_weight(
            name="kernel",
            shape=self.kernel_size + (self.input_channels, gate_filters),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel",
            shape=self.kernel_size + (self.filters, gate_filters),
            initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=self._bias_shape(),
                initializer=self._make_bias_initializer(),
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        else:
            self.bias = None
        self._build_extra_weights()
        if self.normalization is not None:
            self._build_normalization()
        self.built = True

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
        norm.build(self._step_shape(None, (None,) * self.rank, channels))
        return norm

    def _build_normalization(self):
        """The normalization sublayers; the families add the recurrent ones."""
        self.input_norm = self._make_norm("input_norm", self.gate_count)

    @staticmethod
    def _normalized(norm, x):
        return x if norm is None else norm(x)

    def _own_weights(self):
        """The cell's own weights, without its normalization sublayers'."""
        sublayer_weights = {
            id(w) for layer in self._sublayers() for w in layer.weights
        }
        return [w for w in self.weights if id(w) not in sublayer_weights]

    def _sublayers(self):
        names = ("input_norm", "recurrent_norm", "candidate_norm", "cell_norm")
        return [
            layer
            for layer in (getattr(self, name, None) for name in names)
            if layer is not None
        ]

    def load_own_variables(self, store):
        # Keras assigns the saved weights one at a time: from a file whose
        # last weight does not fit (another `reset_after`, say), the first
        # ones would be overwritten before the error. Check every shape
        # first, so that a failed load leaves the cell as it was.
        weights = self._own_weights()
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

    # -- the two parts of a step ---------------------------------------------

    def _add_channel_bias(self, x, bias):
        if bias is None:
            return x
        if self.data_format == "channels_first":
            bias = ops.reshape(bias, (-1,) + (1,) * self.rank)
            # Bias first: Keras's TensorFlow `add(x, bias)` turns into a
            # BiasAdd that reads the bias as channels-last whenever the
            # last axis of `x` has the bias's length (a frame as wide as
            # the channels are many), adding it along the wrong axis.
            return ops.add(bias, x)
        return ops.add(x, bias)

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
        projection = self._convolve(
            inputs,
            self.kernel,
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
        )
        # Per frame: the projection of `batch * time` frames is normalized
        # frame by frame, exactly as step by step.
        projection = self._normalized(self.input_norm, projection)
        return self._add_channel_bias(projection, self.input_bias())

    def recurrent_conv(self, state, kernel):
        """State-to-state convolution: stride 1, 'same' padding."""
        return self._convolve(state, kernel, strides=1, padding="same")

    def _convolve(self, x, kernel, strides, padding, dilation_rate=1):
        """`ops.conv` in the cell's data format, on every backend.

        Two TensorFlow CPU quirks are handled here, once for every
        convolution of the package:

        * Without oneDNN (the default on CPUs without AVX-512),
          TensorFlow's CPU convolutions take channels-last tensors only;
          a channels-first cell transposes around the convolution there,
          which is correct on any device. JAX and PyTorch convolve
          channels first natively.
        * With oneDNN, a convolution of an empty batch returns the input's
          channel count instead of the kernel's (`(0, 5, 5, 2)` for a
          2 -> 6 channel kernel). The result is reshaped to the size the
          convolution has by definition, which is free for every other
          batch (the shape is the same).
        """
        tensorflow = keras.backend.backend() == "tensorflow"
        data_format = self.data_format
        if tensorflow and data_format == "channels_first":
            rank = self.rank
            x = ops.transpose(x, (0, *range(2, rank + 2), 1))
            data_format = "channels_last"
        y = ops.conv(
            x,
            kernel,
            strides=strides,
            padding=padding,
            data_format=data_format,
            dilation_rate=dilation_rate,
        )
        if not tensorflow:
            return y
        strides = standardize_tuple(strides, self.rank, "strides")
        dilation_rate = standardize_tuple(
            dilation_rate, self.rank, "dilation_rate"
        )
        in_shape = ops.shape(x)
        out_spatial = [
            conv_output_length(n, k, s, padding, d)
            for n, k, s, d in zip(
                in_shape[1:-1], kernel.shape[:-2], strides, dilation_rate
            )
        ]
        y = ops.reshape(y, (-1, *out_spatial, kernel.shape[-1]))
        if self.data_format == "channels_first":
            y = ops.transpose(y, (0, self.rank + 1, *range(1, self.rank + 1)))
        return y

    def split_gates(self, x, count=None):
        return ops.split(x, count or self.gate_count, axis=self.channel_axis)

    @property
    def projection_channels(self):
        """Channels of `input_projection`'s output (all gates)."""
        return self.gate_count * self.filters

    def recurrent_step(self, projection, states, recurrent_dropout_mask=None):
        """One time step given the input projection; see the subclasses.

        Args:
            projection: `input_projection` of this step's frame.
            states: the list of state tensors before the step.
            recurrent_dropout_mask: `None`, or a scaled Bernoulli mask
                shaped like the first state, multiplied into the state
                that enters the state-to-state convolution.

        Returns:
            `(output, new_states)`.
        """
        raise NotImplementedError

    def _fused_kind(self):
        """`"lstm"` or `"gru"` when `keras_convgru._fused` computes this
        cell's sequences, else `None` (see
        `ConvRNN.uses_fused_recurrence`)."""
        return None

    def _steps_as(self, family):
        """Whether this cell's step is `family`'s own: a subclass that
        overrides `recurrent_step` keeps its step in every loop (the fused
        recurrence computes `family`'s step by hand)."""
        return type(self).recurrent_step is family.recurrent_step

    def _has_plain_gates(self):
        """`tanh` and `sigmoid` activations and no normalization: the
        gates `keras_convgru._fused` differentiates by hand."""
        return (
            self.activation is keras.activations.tanh
            and self.recurrent_activation is keras.activations.sigmoid
            and self.normalization is None
        )

    def call(self, inputs, states, training=False):
        """One step of a plain `keras.layers.RNN`: a raw frame in.

        The dropout masks come from Keras's `DropoutRNNCell`, which
        `keras.layers.RNN` fills once per sequence before its loop (one
        mask for all gates, as for the input projection's fused
        convolution).
        """
        if training and 0.0 < self.dropout < 1.0:
            inputs = inputs * self.get_dropout_mask(inputs)
        recurrent_dropout_mask = None
        if training and 0.0 < self.recurrent_dropout < 1.0:
            first_state = keras.tree.flatten(states)[0]
            recurrent_dropout_mask = self.get_recurrent_dropout_mask(
                first_state
            )
        return self.recurrent_step(
            self.input_projection(inputs),
            states,
            recurrent_dropout_mask=recurrent_dropout_mask,
        )

    # -- dropout and states --------------------------------------------------

    def dropout_mask(self, shape, rate):
        """A scaled Bernoulli mask (`keras.random.dropout` of ones)."""
        ones = ops.ones(shape, dtype=self.compute_dtype)
        return keras.random.dropout(ones, rate, seed=self.seed_generator)

    def state_shape(self, batch_size, input_spatial_shape):
        spatial = self.state_spatial_shape(input_spatial_shape)
        return self._step_shape(batch_size, spatial, self.filters)

    def zero_states(self, batch_size, input_spatial_shape):
        """Zero initial states for frames of the given (maybe dynamic) size."""
        shape = self.state_shape(batch_size, input_spatial_shape)
        return [
            ops.zeros(shape, dtype=self.compute_dtype)
            for _ in range(self._num_states)
        ]

    def get_initial_state(self, batch_size=None):
        """Zero states; needs the frame size seen at build time.

        `keras.layers.RNN` only passes the batch size. With unknown frame
        sizes, pass `initial_state=` or use `keras_convgru.ConvRNN`, which
        computes the state size from the actual input.
        """
        if any(n is None for n in self.input_spatial_shape):
            raise ValueError(
                f"{self.__class__.__name__}.get_initial_state needs the frame "
                "size, which was unknown when the cell was built "
                f"(input spatial shape {self.input_spatial_shape}). Use "
                "keras_convgru.ConvRNN (it sizes the state from the input "
                "at call time) or pass `initial_state=`."
            )
        return self.zero_states(batch_size, self.input_spatial_shape)

    def compute_output_shape(self, inputs_shape, states_shape=None):
        """`(output_shape, [state_shape, ...])` for a step input shape."""
        inputs_shape = tuple(inputs_shape)
        batch = inputs_shape[0]
        shape = self.state_shape(batch, self._spatial(inputs_shape))
        return shape, [shape] * self._num_states

    def get_config(self):
        config = {
            "rank": self.rank,
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate,
            "activation": keras.activations.serialize(self.activation),
            "recurrent_activation": keras.activations.serialize(
                self.recurrent_activation
            ),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(
                self.kernel_initializer
            ),
            "recurrent_initializer": keras.initializers.serialize(
                self.recurrent_initializer
            ),
            "bias_initializer": keras.initializers.serialize(
                self.bias_initializer
            ),
            "kernel_regularizer": keras.regularizers.serialize(
                self.kernel_regularizer
            ),
            "recurrent_regularizer": keras.regularizers.serialize(
                self.recurrent_regularizer
            ),
            "bias_regularizer": keras.regularizers.serialize(
                self.bias_regularizer
            ),
            "kernel_constraint": keras.constraints.serialize(
                self.kernel_constraint
            ),
            "recurrent_constraint": keras.constraints.serialize(
                self.recurrent_constraint
            ),
            "bias_constraint": keras.constraints.serialize(
                self.bias_constraint
            ),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
            "normalization": self.normalization,
            "norm_groups": self.norm_groups,
            "norm_epsilon": self.norm_epsilon,
        }
        return {**super().get_config(), **config}


def named_arguments(local_variables):
    """The named arguments an `__init__` received, from its `locals()`.

    Called first thing in a constructor with an explicit signature, it
    hands the arguments on without spelling each one out a second time:
    `super().__init__(**named_arguments(locals()), **kwargs)`.
    """
    arguments = dict(local_variables)
    for name in ("self", "__class__", "kwargs"):
        arguments.pop(name, None)
    return arguments


def fixed_rank_config(config):
    """Config of a rank-specific class: the rank is implied by the class."""
    config = dict(config)
    config.pop("rank", None)
    return config
