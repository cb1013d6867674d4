"""`ConvRNNCellBase`: the cell protocol that `ConvRNN` drives, as a base.

What `ConvRNN` calls on a cell (the protocol, docs/guides/cells.md) is a
handful of public members; a cell of a user's own that has them gets
everything the keras_convgru cells get:

* `rank`, `data_format`, `state_size` (as `keras.layers.RNN` cells);
* `state_shape(batch_size, frame_shape)`: the shape of each state, and
  of the output, for frames of `frame_shape` (the spatial sizes, which
  may be `None` or symbolic);
* `input_projection(frames)`: everything a step computes from its frame
  alone, for `n` frames at once (`ConvRNN` runs it over every time step
  before its loop when a step is small);
* `recurrent_step(projection, states, recurrent_dropout_mask=None)`:
  the rest of the step, `(output, new_states)`;
* optional: `projection_channels` (for the hoisting decision), `dropout`
  and `recurrent_dropout` with a `seed_generator` (the masks are drawn
  once per sequence by `ConvRNN` and passed to the step), and
  `memory_state_index`, the index in the states of a spatiotemporal
  memory that `ConvRNN` passes between stacked cells (the zigzag).

This base gives a cell those members' shared parts: the layout, the
states, dropout, `call` for a plain `keras.layers.RNN`, and the config.
The families add their weights and their step (the gated convolutional
cells through `keras_convgru._gated_cell`).
"""

import keras
from keras import ops

from keras_convgru import _conv_ops
from keras_convgru._keras_internals import DropoutRNNCell
from keras_convgru._validation import standardize_data_format
from keras_convgru._validation import validate_positive_int
from keras_convgru._validation import validate_rank
from keras_convgru._validation import validate_rate


class ConvRNNCellBase(keras.layers.Layer, DropoutRNNCell):
    """The base of every keras_convgru cell (not public): the protocol.

    A cell is two pure functions of their arguments and the weights:

    * `input_projection(inputs)`: what the step computes from its frame
      alone (for the gated cells the input-to-state convolution of all
      gates plus the input bias). It does not depend on the state, so
      `ConvRNN` can run it once over every time step before the loop.
    * `recurrent_step(projection, states, recurrent_dropout_mask=None)`:
      the state-to-state part and the gate math, the only work left inside
      the loop. The recurrent dropout mask, when there is one, is an
      argument like the others.

    `call(inputs, states, training)` composes them for a plain
    `keras.layers.RNN`, which draws the masks once per sequence through
    Keras's `DropoutRNNCell` (see `_keras_internals`).
    """

    #: Names of the states, in order; their number is the state count.
    state_names = ("h",)
    #: Index in the states of the spatiotemporal memory that `ConvRNN`
    #: passes from cell to cell in a stack (the zigzag), or `None`.
    memory_state_index = None

    def __init__(
        self,
        rank,
        filters,
        data_format=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.rank = validate_rank(rank)
        self.filters = validate_positive_int(filters, "filters")
        self.data_format = standardize_data_format(data_format)
        self.dropout = validate_rate(dropout, "dropout")
        self.recurrent_dropout = validate_rate(
            recurrent_dropout, "recurrent_dropout"
        )
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed=seed)
        count = len(self.state_names)
        self.state_size = self.filters if count == 1 else [self.filters] * count
        self.output_size = self.filters
        self.input_spec = keras.layers.InputSpec(ndim=self.rank + 2)
        self.input_channels = None
        self.input_spatial_shape = (None,) * self.rank

    # -- layout --------------------------------------------------------------

    @property
    def channel_axis(self):
        """Axis of the channels in a step tensor `(batch, ...)`."""
        return _conv_ops.channel_axis(self.data_format)

    def frame_shape(self, step_shape):
        """The spatial part of a step shape `(batch, ...)`."""
        return _conv_ops.frame_shape(step_shape, self.data_format)

    def step_shape(self, batch, spatial, channels):
        """A step shape `(batch, ...)` in the cell's data format."""
        return _conv_ops.step_shape(batch, spatial, channels, self.data_format)

    def state_spatial_shape(self, frame_shape):
        """Spatial size of the state for frames of `frame_shape` (entries
        may be ints, `None` or symbolic scalars): the frame's own here."""
        return tuple(frame_shape)

    def state_shape(self, batch_size, frame_shape):
        """The shape of each state, and of the output, for a batch of
        frames of `frame_shape`."""
        spatial = self.state_spatial_shape(frame_shape)
        return self.step_shape(batch_size, spatial, self.filters)

    def _read_input_shape(self, input_shape):
        """`input_channels` and `input_spatial_shape` from a step input
        shape; checks its rank and channels."""
        input_shape = tuple(input_shape)
        if len(input_shape) == 2:
            # `(batch, channels)`: what `keras.layers.StackedRNNCells` passes
            # to the cells after the first; the frame size stays unknown.
            batch, channels = input_shape
            input_shape = self.step_shape(batch, (None,) * self.rank, channels)
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
        self.input_spatial_shape = self.frame_shape(input_shape)
        # The state's size, checked against the kernel (`valid` padding).
        self.state_spatial_shape(self.input_spatial_shape)

    # -- the step ------------------------------------------------------------

    def input_projection(self, inputs):
        """What a step computes from its frame alone, for `n` frames."""
        raise NotImplementedError

    def recurrent_step(self, projection, states, recurrent_dropout_mask=None):
        """One time step given the input projection.

        Args:
            projection: `input_projection` of this step's frame.
            states: the list of state tensors before the step.
            recurrent_dropout_mask: `None`, or a scaled Bernoulli mask
                shaped like the first state, multiplied into the state
                where it enters the state-to-state path.

        Returns:
            `(output, new_states)`.
        """
        raise NotImplementedError

    def convolve(self, x, kernel, strides=1, padding="same", dilation_rate=1):
        """A convolution in the cell's data format (stride 1 and 'same'
        by default: the state-to-state convolution)."""
        return _conv_ops.convolve(
            x,
            kernel,
            self.rank,
            self.data_format,
            strides=strides,
            padding=padding,
            dilation_rate=dilation_rate,
        )

    def add_channel_bias(self, x, bias):
        """`x + bias` along the channels (`None`: no bias)."""
        return _conv_ops.add_channel_bias(x, bias, self.data_format)

    def split_gates(self, x, count):
        """`count` equal blocks along the channels (one `Split` op)."""
        return ops.split(x, count, axis=self.channel_axis)

    @staticmethod
    def masked_state(state, recurrent_dropout_mask):
        """The state that enters the state-to-state path."""
        if recurrent_dropout_mask is None:
            return state
        return state * recurrent_dropout_mask

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

    # -- states --------------------------------------------------------------

    def zero_states(self, batch_size, frame_shape):
        """Zero states for frames of the given (maybe dynamic) size."""
        shape = self.state_shape(batch_size, frame_shape)
        return [
            ops.zeros(shape, dtype=self.compute_dtype) for _ in self.state_names
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
        shape = self.state_shape(
            inputs_shape[0], self.frame_shape(inputs_shape)
        )
        return shape, [shape] * len(self.state_names)

    def get_config(self):
        config = {
            "rank": self.rank,
            "filters": self.filters,
            "data_format": self.data_format,
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
        }
        return {**super().get_config(), **config}


def dropout_mask(cell, shape, rate):
    """A scaled Bernoulli mask (`keras.random.dropout` of ones) drawn
    from the cell's `seed_generator`."""
    seed_generator = getattr(cell, "seed_generator", None)
    if seed_generator is None:
        raise ValueError(
            f"Cell {cell!r} has dropout or recurrent_dropout={rate}, so "
            "ConvRNN draws its masks from the cell's `seed_generator` (a "
            "`keras.random.SeedGenerator`), which the cell lacks. Give it "
            "one (see the cell protocol, docs/guides/cells.md)."
        )
    ones = ops.ones(shape, dtype=cell.compute_dtype)
    return keras.random.dropout(ones, rate, seed=seed_generator)


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
