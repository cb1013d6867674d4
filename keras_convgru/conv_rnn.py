"""`ConvRNN`: a `keras.layers.RNN` for convolutional cells."""

import keras
from keras import ops

from keras_convgru import _recurrence
from keras_convgru import _rnn_checks
from keras_convgru._validation import validate_fuse_recurrence


@keras.saving.register_keras_serializable(package="keras_convgru")
class ConvRNN(keras.layers.RNN):
    """Recurrent layer for convolutional cells, with N-D states.

    `keras.layers.RNN` assumes that states and outputs are vectors
    `(batch, units)`: inside a functional model it cannot work out the shape
    of a convolutional cell's output, and it needs static frame sizes to
    build a zero state. `ConvRNN` is the same layer for cells whose states
    are feature maps `(batch, *spatial, filters)`: it works in Sequential,
    functional and subclassed models, with frames of unknown size
    (`keras.Input((None, None, None, channels))`), with a list of cells
    (stacked: each cell's output sequence feeds the next cell), and
    everywhere a `keras.layers.RNN` does (`Bidirectional`, masking,
    `stateful`, `unroll`).

    With `x_t` the frame at time step `t` of `T`:

    ```
    states_0 = initial_state (zeros by default)
    output_t, states_t = cell(x_t, states_(t-1))     for t = 1, ..., T
    ```

    A list of cells is one stacked cell: the first cell steps `x_t`, each
    next cell steps the previous cell's `output_t`, and `output_t` is the
    last cell's.

    For the keras_convgru cells it runs the gates fused (one input-to-state
    convolution per step, and one state-to-state convolution, two for a
    GRU with `reset_after=False`), draws the dropout masks once per
    sequence before the loop and passes them to every step, and when a
    step is small it moves the input-to-state convolution out of the time
    loop (see `hoists_input_projection`): the input projection of all time
    steps is one convolution over `(batch * time, ...)` frames, and the
    loop only runs the state-to-state convolution and the gate math. On
    JAX with a CPU device a single ConvGRU or ConvLSTM cell runs the fused
    recurrence instead, a loop with its own backward pass (see
    `uses_fused_recurrence` and `fuse_recurrence`). The result is the same
    as stepping the cell with `keras.layers.RNN` (to float32 rounding).

    Masks: a `(batch, time)` mask, given as `mask=` or propagated from an
    earlier layer such as `keras.layers.Masking`, makes a masked step carry
    the states forward. `Masking` gives frames a per-pixel mask
    `(batch, time, *spatial)`; a step is masked when every pixel of its
    frame is. The layer passes the `(batch, time)` mask on with
    `return_sequences=True`.

    A cell usable here follows the keras_convgru cell protocol
    (`input_projection`, `recurrent_step`, `state_shape`; see the guide
    "Writing your own cell"), and gets what the keras_convgru cells get:
    the hoisted input projection, dropout masks drawn once per sequence,
    masks, stacking and the zigzag memory. Any other `keras.layers.RNN`
    cell with `compute_output_shape(step_input_shape)` returning
    `(output_shape, [state_shape, ...])` is stepped by
    `keras.layers.RNN`.

    In a stack, the cells that carry a spatiotemporal memory (their
    `memory_state_index`, as PredRNN's) pass it in a zigzag: at step `t`
    the first of them reads the memory that the last one wrote at
    `t - 1`, and each further one reads what the one before it wrote at
    `t`. Such cells must have the same `filters`.

    Args:
        cell: a convolutional RNN cell instance (e.g.
            `keras_convgru.ConvGRU2DCell`) or a list of them (stacked).
        return_sequences: Boolean (default `False`). Whether to return the
            last output in the output sequence, or the full sequence.
        return_state: Boolean (default `False`). Whether to return the last
            states in addition to the output.
        go_backwards: Boolean (default `False`). If `True`, process the input
            sequence backwards and return the reversed sequence.
        stateful: Boolean (default `False`). If `True`, the last state of
            each sample of a batch is the initial state of the same sample
            in the next batch. Needs a fixed batch size and fixed frame
            sizes.
        unroll: Boolean (default `False`). If `True`, unroll the time loop
            (needs a fixed number of time steps).
        zero_output_for_mask: Boolean (default `False`). Whether masked
            time steps output zeros instead of the previous output
            (`return_sequences=True` only).
        fuse_recurrence: `"auto"` (default), `True` or `False`: whether a
            single ConvGRU or ConvLSTM cell runs the fused recurrence, a
            loop with its own backward pass (see
            `uses_fused_recurrence`). `"auto"` fuses where it was
            measured faster: JAX with a CPU device (13x faster training
            there, docs/performance.md); `True` fuses wherever it can and
            raises a `ValueError` saying why where it cannot.
        **kwargs: standard layer arguments (`name`, `dtype`,
            `activity_regularizer`, ...).

    Call arguments:
        sequences: a tensor `(batch, time, *spatial, channels)` (or
            `(batch, time, channels, *spatial)` with `channels_first`).
        initial_state: list of initial state tensors (GRU cells: one,
            LSTM cells: two, per cell). `None` means zeros.
        mask: boolean tensor `(batch, time)`; a masked step carries the
            state forward.
        training: Python boolean, whether dropout is active.

    Input shape:
        `(batch, time, *spatial, channels)` (`channels_last`) or
        `(batch, time, channels, *spatial)` (`channels_first`). Any
        spatial size may be `None`.

    Output shape:
        - `return_sequences=False`: `(batch, *new_spatial, filters)`.
        - `return_sequences=True`: `(batch, time, *new_spatial, filters)`.
        - `return_state=True`: `output, *states`, each state
          `(batch, *new_spatial, filters)`; for a stack, one list of
          states per cell.

        `new_spatial` is the input-to-state convolution's output size
        (channels first for `channels_first`).

    Example:

    >>> import numpy as np
    >>> import keras
    >>> import keras_convgru as kc
    >>> inputs = keras.Input((None, None, None, 3))
    >>> cells = [kc.ConvGRU2DCell(8, 3, padding="same"),
    ...          kc.ConvLSTM2DCell(4, 3, padding="same")]
    >>> outputs = kc.ConvRNN(cells, return_sequences=True)(inputs)
    >>> model = keras.Model(inputs, outputs)
    >>> tuple(model(np.zeros((2, 5, 16, 16, 3), "float32")).shape)
    (2, 5, 16, 16, 4)
    """

    #: Largest input projection of one sample's time step, in elements
    #: (`projection_channels` times the state's pixels), that `ConvRNN`
    #: computes for all time steps before its loop; see
    #: `hoists_input_projection`. Set it on a layer (or the class) to 0 to
    #: never hoist, or to a large number to always hoist.
    max_hoisted_step_elements = 2**15

    def __init__(
        self,
        cell,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        zero_output_for_mask=False,
        fuse_recurrence="auto",
        **kwargs,
    ):
        rank = _rnn_checks.check_cells(cell)
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            zero_output_for_mask=zero_output_for_mask,
            **kwargs,
        )
        # Keras 3.16's RNN.__init__ no longer declares masking support;
        # this layer consumes a `(batch, time)` mask and passes it on.
        self.supports_masking = True
        self.rank = rank
        self.fuse_recurrence = validate_fuse_recurrence(fuse_recurrence)
        if fuse_recurrence is True:
            # What the layer alone decides fails here; what depends on the
            # sequences (their length, a mask) fails at call time.
            obstacle = _recurrence.fused_obstacle(self)
            if obstacle is not None:
                raise ValueError(
                    "Argument `fuse_recurrence=True` needs the fused "
                    f"recurrence, which cannot run layer '{self.name}': "
                    f"{obstacle}. Received: fuse_recurrence=True"
                )
        self._step_input_shape = None

    @property
    def _cells(self):
        if isinstance(self.cell, keras.layers.StackedRNNCells):
            return list(self.cell.cells)
        return [self.cell]

    @property
    def is_stack(self):
        """Whether the layer steps a stack of cells (a list of cells)."""
        return isinstance(self.cell, keras.layers.StackedRNNCells)

    def __call__(self, sequences, *args, **kwargs):
        _rnn_checks.check_sequences_rank(self, sequences)
        return super().__call__(sequences, *args, **kwargs)

    # -- the paths -----------------------------------------------------------

    def hoists_input_projection(self, sequences_shape):
        """Whether `call` computes the input projection before the loop.

        The input-to-state convolution does not depend on the state, so for
        all time steps it can run as one convolution over `batch * time`
        frames before the time loop; the loop then runs only the
        state-to-state convolution and the gate math. That saves a
        convolution launch per step, which dominates when the frames are
        small; for large frames it only moves a `(batch, time, ...,
        projection_channels)` tensor through memory several more times.

        The decision is per sample, so that `fit`, `predict` and
        `train_on_batch` (a known or unknown batch size) take the same
        path: hoist when one sample's projection of one step has at most
        `max_hoisted_step_elements` elements, or when the frame size is
        unknown until run time. Only the first cell of a stack is hoisted
        (the others step the previous cell's output). Both paths compute
        the same numbers.

        Args:
            sequences_shape: the input shape `(batch, time, ...)`.

        Returns:
            bool, or `False` for cells that `ConvRNN` does not drive itself
            (and, for frames of known size, for a protocol cell without
            `projection_channels`).
        """
        return _recurrence.hoists_input_projection(self, sequences_shape)

    def uses_fused_recurrence(self, sequences_shape, mask=None):
        """Whether `call` runs the fused recurrence for these sequences.

        The fused recurrence computes the same numbers as Keras's time
        loop with its own backward pass, which never calls a backend's
        convolution gradient (the state-to-state kernel's gradient is one
        matrix product per kernel tap over the whole sequence; see
        `keras_convgru._fused`). On JAX's CPU backend, where convolution
        gradients inside a loop dominate a training step, it trains a
        ConvLSTM 13 times faster; on TensorFlow's CPU paths and on PyTorch
        Keras's loop is as fast or faster (docs/performance.md).

        It is used when `fuse_recurrence` is `True`, or `"auto"` on the
        JAX backend with a CPU as its default device, and all of these
        hold (otherwise `"auto"` steps through Keras's loop, with the same
        results to float32 rounding, and `True` raises a `ValueError`
        that says which does not hold):

        - the layer has one cell, a `ConvLSTMCell` without peepholes or a
          `ConvGRUCell` with `reset_after=True` (any rank, either data
          format), with the default activations (`tanh`, and `sigmoid`
          for the gates) and `normalization=None`, whose `call` and
          `recurrent_step` are the family's own (a subclass that
          overrides either keeps its step);
        - no `mask`, `unroll=False`, and a float32 or float64 compute
          dtype (mixed precision keeps Keras's loop, whose convolution
          gradients accumulate in float32);
        - the number of time steps is known when the layer is called.

        Args:
            sequences_shape: the input shape `(batch, time, ...)`.
            mask: the call's mask, if any.

        Returns:
            bool.
        """
        return _recurrence.uses_fused_recurrence(self, sequences_shape, mask)

    def call(self, sequences, initial_state=None, mask=None, training=False):
        _rnn_checks.check_time_steps(self, tuple(sequences.shape))
        _rnn_checks.check_frame_sizes(self, sequences)
        initial_state, zero_initial = self._initial_state(
            sequences, initial_state
        )
        if mask is not None:
            states = self.states if initial_state is None else initial_state
            state_ndim = len(keras.tree.flatten(states)[0].shape)
            mask = _recurrence.broadcastable_mask(mask, state_ndim)
        path = _recurrence.path(self, tuple(sequences.shape), mask)
        if path == _recurrence.FUSED:
            return _recurrence.run_fused(
                self, sequences, initial_state, zero_initial, training
            )
        if path == _recurrence.STEPPED:
            return _recurrence.run_stepped(
                self, sequences, initial_state, mask, training
            )
        return super().call(
            sequences, initial_state=initial_state, mask=mask, training=training
        )

    # -- states and shapes -----------------------------------------------------

    def _initial_state(self, sequences, initial_state):
        """`(initial_state, zero_initial)`: the given states, checked and
        nested per cell; zeros when none are given and the layer is not
        stateful; `None` for a stateful layer's held states."""
        if initial_state is None and self.stateful:
            _rnn_checks.check_held_states(self, sequences)
            return None, False
        if initial_state is None:
            return self._zero_initial_state(sequences), True
        if not keras.tree.is_nested(initial_state):
            initial_state = [initial_state]
        _rnn_checks.check_initial_state(self, sequences, initial_state)
        if self.is_stack:
            # Accept a flat list of states for a stack (of any number of
            # cells), too.
            flat = list(keras.tree.flatten(initial_state))
            per_cell = []
            for cell in self._cells:
                n = _recurrence.num_states(cell)
                per_cell.append(flat[:n])
                flat = flat[n:]
            initial_state = self._structure_states(per_cell)
        return initial_state, False

    def _state_shapes(self, step_shape):
        """Per cell, the shapes of its states, and the output shape."""
        shapes = []
        shape = tuple(step_shape)
        for cell in self._cells:
            shape, state_shapes = _recurrence.cell_shapes(cell, shape)
            shapes.append(state_shapes)
        return shape, shapes

    def _structure_states(self, per_cell_states):
        """Nest a per-cell list of state lists as the cell expects."""
        if not self.is_stack:
            return list(per_cell_states[0])
        # In a stack every cell gets a list of states, even a single-state
        # cell: Keras's masked JAX loop reads the previous output from
        # `states[-1][0]` and would otherwise index into a bare tensor.
        return [list(states) for states in per_cell_states]

    def _zero_initial_state(self, sequences):
        """Zero states sized from the actual (maybe dynamic) input."""
        shape = ops.shape(sequences)
        step_shape = (shape[0], *shape[2:])
        _, per_cell_shapes = self._state_shapes(step_shape)
        return self._structure_states(
            [
                [ops.zeros(s, dtype=cell.compute_dtype) for s in shapes]
                for cell, shapes in zip(self._cells, per_cell_shapes)
            ]
        )

    # -- Layer API -------------------------------------------------------------

    def build(self, sequences_shape, initial_state_shape=None):
        sequences_shape = tuple(sequences_shape)
        _rnn_checks.check_build_shape(self, sequences_shape)
        step_shape = (sequences_shape[0],) + sequences_shape[2:]
        self._step_input_shape = step_shape
        # Build the cells with their true N-D input shapes (a
        # keras.layers.StackedRNNCells would pass `(batch, units)`).
        shape = step_shape
        for cell in self._cells:
            if isinstance(cell, keras.layers.Layer) and not cell.built:
                cell.build(shape)
                cell.built = True
            shape = _recurrence.cell_shapes(cell, shape)[0]
        if self.is_stack:
            self.cell.built = True
        channel_axis = getattr(self._cells[0], "channel_axis", None)
        if self.rank is not None and channel_axis is not None:
            channels = step_shape[channel_axis]
            axis = channel_axis if channel_axis < 0 else channel_axis + 1
            self.input_spec = keras.layers.InputSpec(
                ndim=self.rank + 3, axes={axis: channels}
            )
        super().build(sequences_shape, initial_state_shape)

    def get_initial_state(self, batch_size):
        if self._step_input_shape is None:
            return super().get_initial_state(batch_size)
        step_shape = (batch_size,) + tuple(self._step_input_shape[1:])
        _, per_cell_shapes = self._state_shapes(step_shape)
        per_cell = []
        for cell, shapes in zip(self._cells, per_cell_shapes):
            if any(d is None for s in shapes for d in s[1:]):
                raise ValueError(
                    f"Layer '{self.name}' cannot make a zero state without "
                    f"the frame size: state shapes {shapes}."
                )
            per_cell.append(
                [ops.zeros(s, dtype=cell.compute_dtype) for s in shapes]
            )
        return self._structure_states(per_cell)

    def reset_state(self):
        # keras.layers.RNN.reset_state does not flatten the states of a
        # stack of cells.
        if self.states is not None:
            for state in keras.tree.flatten(self.states):
                state.assign(ops.zeros_like(state.value))

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        sequences_shape = tuple(sequences_shape)
        batch, steps = sequences_shape[0], sequences_shape[1]
        step_shape = (batch,) + sequences_shape[2:]
        output_shape, per_cell_shapes = self._state_shapes(step_shape)
        if self.return_sequences:
            output_shape = (batch, steps) + output_shape[1:]
        if not self.return_state:
            return output_shape
        states = self._structure_states(per_cell_shapes)
        return (output_shape, *states)

    def compute_mask(self, _, mask):
        if mask is not None:
            mask = _recurrence.time_step_mask(keras.tree.flatten(mask)[0])
        output_mask = mask if self.return_sequences else None
        if self.return_state:
            n = sum(_recurrence.num_states(c) for c in self._cells)
            return [output_mask] + [None] * n
        return output_mask

    def get_config(self):
        # As keras.layers.ConvLSTM2D's, the config always has the key.
        return {
            **super().get_config(),
            "activity_regularizer": keras.regularizers.serialize(
                self.activity_regularizer
            ),
            "fuse_recurrence": self.fuse_recurrence,
        }
