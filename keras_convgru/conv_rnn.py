"""`ConvRNN`: a `keras.layers.RNN` for convolutional cells."""

import math

import keras
from keras import ops

from keras_convgru._conv_base import ConvRNNCellBase
from keras_convgru._conv_base import _is_int
from keras_convgru._docs import SPATIAL_NAMES
from keras_convgru._fused import gru_sequence
from keras_convgru._fused import lstm_sequence
from keras_convgru._keras_internals import rnn as backend_rnn


def _cells_of(cell):
    """The list of cells behind `cell` (a single cell or a stack)."""
    if isinstance(cell, keras.layers.StackedRNNCells):
        return list(cell.cells)
    return [cell]


def _num_states(cell):
    size = cell.state_size
    return len(size) if isinstance(size, (list, tuple)) else 1


def _fused_by_default():
    """Where `fuse_recurrence="auto"` fuses: JAX on a CPU (measured; see
    `ConvRNN.uses_fused_recurrence`)."""
    if keras.backend.backend() != "jax":
        return False
    devices = keras.distribution.list_devices()
    return bool(devices) and str(devices[0]).lower().startswith("cpu")


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

    A cell usable here follows the `keras.layers.RNN` cell protocol and also
    has `compute_output_shape(step_input_shape)` returning
    `(output_shape, [state_shape, ...])`, like the keras_convgru cells.

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

    def __init__(
        self,
        cell,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        zero_output_for_mask=False,
        **kwargs,
    ):
        cells = list(cell) if isinstance(cell, (list, tuple)) else [cell]
        if not cells:
            raise ValueError(
                "Argument `cell` must be a cell or a non-empty list of "
                f"cells. Received: cell={cell!r}"
            )
        inner = _cells_of(cells[0]) if len(cells) == 1 else cells
        for c in inner:
            if not callable(getattr(c, "compute_output_shape", None)) or (
                getattr(c, "state_size", None) is None
            ):
                raise ValueError(
                    "ConvRNN needs convolutional RNN cells: each cell must "
                    "have `state_size`, `call` and "
                    "`compute_output_shape(step_input_shape)` returning "
                    "(output_shape, state_shapes). Received: "
                    f"cell={c!r}"
                )
        ranks = {getattr(c, "rank", None) for c in inner}
        if len(ranks) > 1:
            raise ValueError(
                "All stacked cells must have the same rank. Received cells "
                f"of ranks {sorted(ranks, key=str)}"
            )
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
        self.rank = ranks.pop()
        if self.rank is not None:
            self.input_spec = keras.layers.InputSpec(ndim=self.rank + 3)
        self._step_input_shape = None

    def __call__(self, sequences, *args, **kwargs):
        self._check_sequences_rank(sequences)
        return super().__call__(sequences, *args, **kwargs)

    def _check_sequences_rank(self, sequences):
        """A wrong-rank input: name the layout, before Keras's InputSpec."""
        shape = getattr(sequences, "shape", None)
        if self.rank is None or shape is None:
            return
        if len(shape) == self.rank + 3:
            return
        spatial = SPATIAL_NAMES[self.rank]
        data_format = getattr(self._cells[0], "data_format", None)
        if data_format == "channels_first":
            layout = f"(batch, time, channels, {spatial})"
        else:
            layout = f"(batch, time, {spatial}, channels)"
        where = f" with data_format='{data_format}'" if data_format else ""
        raise ValueError(
            f"Input 0 of layer '{self.name}' is incompatible with the "
            f"layer: expected ndim={self.rank + 3}, found ndim={len(shape)}. "
            f"Full shape received: {tuple(shape)}. "
            f"{self.__class__.__name__} (rank {self.rank}) takes sequences "
            f"of frames {layout}{where}."
        )

    # -- helpers --------------------------------------------------------------

    @property
    def _cells(self):
        return _cells_of(self.cell)

    #: Largest input projection of one sample's time step, in elements
    #: (`projection_channels` times the state's pixels), that `ConvRNN`
    #: computes for all time steps before its loop; see
    #: `hoists_input_projection`. Set it on a layer (or the class) to 0 to
    #: never hoist, or to a large number to always hoist.
    max_hoisted_step_elements = 2**15

    def _steps_own_cells(self):
        """True when every cell is a keras_convgru cell with the base `call`.

        ConvRNN then drives the cells' step functions itself: it draws the
        dropout masks once per sequence and may hoist the first cell's
        input projection. Other cells (or a subclass that overrides
        `call`) are stepped as they are, by `keras.layers.RNN`.
        """
        return all(
            isinstance(cell, ConvRNNCellBase)
            and type(cell).call is ConvRNNCellBase.call
            for cell in self._cells
        )

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
            bool, or `False` for cells that `ConvRNN` does not drive itself.
        """
        if not self._steps_own_cells():
            return False
        cell = self._cells[0]
        step_shape = (1,) + tuple(sequences_shape[2:])
        spatial = cell.state_spatial_shape(cell._spatial(step_shape))
        if not all(_is_int(n) for n in spatial):
            return True
        elements = cell.projection_channels * math.prod(spatial)
        return elements <= self.max_hoisted_step_elements

    #: `"auto"` (the default): the fused recurrence where it was measured
    #: faster (JAX on the CPU); `True`: wherever it applies; `False`:
    #: never. Set it on a layer (or on the class); see
    #: `uses_fused_recurrence`.
    fuse_recurrence = "auto"

    def uses_fused_recurrence(self, sequences_shape):
        """Whether `call` runs the fused recurrence for these sequences.

        The fused recurrence computes the same numbers as Keras's time
        loop, with its own backward pass (`keras.ops.custom_gradient`):
        the input projections of all steps are computed at once before the
        loop (as when hoisting); the backward loop runs only the gate
        derivatives and the state gradient, a convolution with the flipped
        kernel; the state-to-state kernel's gradient is computed once for
        the whole sequence after the loop, as one matrix product per
        kernel tap, instead of a filter-gradient convolution per step; and
        from the zero initial state the first step's state-to-state
        convolution (zero) is skipped. It never calls a backend's
        convolution gradient, which on JAX's CPU backend (XLA:CPU) is
        where a ConvLSTM's training step spends most of its time: there it
        trains about 40 times faster. On TensorFlow's CPU paths and on
        PyTorch the per-step convolution gradients are fast and Keras's
        loop is as fast or faster. See docs/performance.md.

        It is used when `fuse_recurrence` is `True`, or `"auto"` on the
        JAX backend with a CPU as its default device, and all of these
        hold (otherwise the layer steps through Keras's loop, with the
        same results to float32 rounding):

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

        Returns:
            bool.
        """
        fuse = self.fuse_recurrence
        if fuse not in (True, False, "auto"):
            raise ValueError(
                "`fuse_recurrence` must be True, False or 'auto'. "
                f"Received: fuse_recurrence={fuse!r}"
            )
        if fuse == "auto":
            fuse = _fused_by_default()
        if not (fuse and self._steps_own_cells()):
            return False
        if len(self._cells) != 1 or self.unroll:
            return False
        if sequences_shape[1] is None:
            return False
        if self.compute_dtype not in ("float32", "float64"):
            return False
        cell = self._cells[0]
        return cell._fused_kind() is not None

    def _fused_recurrence(
        self, sequences, initial_state, zero_initial, training
    ):
        """`call` through `keras_convgru._fused`; see
        `uses_fused_recurrence`."""
        (cell,) = self._cells
        initial_state = keras.tree.flatten(self._starting_states(initial_state))
        (input_mask,), (recurrent_mask,) = self._dropout_masks(
            sequences, training
        )
        if input_mask is not None:
            sequences = sequences * ops.expand_dims(input_mask, 1)
        if self.go_backwards:
            sequences = ops.flip(sequences, axis=1)
        # Time-major from here on: the loops read their steps off the
        # leading axis (the input has fewer channels than the projection).
        ndim = len(sequences.shape)
        projection = self._project_all_steps(
            ops.transpose(sequences, (1, 0, *range(2, ndim))), time_major=True
        )
        if cell._fused_kind() == "lstm":
            h0, c0 = initial_state
            outputs, c_last = lstm_sequence(
                cell, projection, h0, c0, recurrent_mask, zero_initial
            )
            states = [outputs[-1], c_last]
        else:
            (h0,) = initial_state
            outputs = gru_sequence(
                cell, projection, h0, recurrent_mask, zero_initial
            )
            states = [outputs[-1]]
        if self.return_sequences:
            outputs = ops.transpose(outputs, (1, 0, *range(2, ndim)))
        return self._finish(states[0], outputs, states)

    def _state_shapes(self, step_shape):
        """Per cell, the shapes of its states, and the output shape."""
        shapes = []
        shape = tuple(step_shape)
        for cell in self._cells:
            shape, state_shapes = cell.compute_output_shape(shape)
            shape = tuple(shape)
            shapes.append([tuple(s) for s in state_shapes])
        return shape, shapes

    def _structure_states(self, per_cell_states):
        """Nest a per-cell list of state lists as the cell expects."""
        cells = self._cells
        if len(cells) == 1 and not isinstance(
            self.cell, keras.layers.StackedRNNCells
        ):
            return list(per_cell_states[0])
        # In a stack every cell gets a list of states, even a single-state
        # cell: Keras's masked JAX loop reads the previous output from
        # `states[-1][0]` and would otherwise index into a bare tensor.
        return [list(states) for states in per_cell_states]

    def _zero_initial_state(self, sequences):
        """Zero states sized from the actual (maybe dynamic) input."""
        shape = ops.shape(sequences)
        batch = shape[0]
        step_shape = (batch, *shape[2:])
        per_cell = []
        for cell in self._cells:
            if isinstance(cell, ConvRNNCellBase):
                spatial = cell._spatial(step_shape)
                states = cell.zero_states(batch, spatial)
                step_shape = cell.state_shape(batch, spatial)
            else:
                out_shape, state_shapes = cell.compute_output_shape(step_shape)
                states = [
                    ops.zeros(s, dtype=cell.compute_dtype) for s in state_shapes
                ]
                step_shape = tuple(out_shape)
            per_cell.append(states)
        return self._structure_states(per_cell)

    # -- Layer API ------------------------------------------------------------

    def build(self, sequences_shape, initial_state_shape=None):
        sequences_shape = tuple(sequences_shape)
        if self.rank is not None and len(sequences_shape) != self.rank + 3:
            raise ValueError(
                f"Layer '{self.name}' expects inputs of rank {self.rank + 3} "
                f"(batch, time, {self.rank} spatial dimensions, channels). "
                f"Received: input shape={sequences_shape}"
            )
        self._check_time_steps(sequences_shape)
        if self.stateful and sequences_shape[0] is None:
            raise ValueError(
                f"Layer '{self.name}' has `stateful=True`, which needs a "
                "fixed batch size: pass `batch_size=` to `keras.Input` (or "
                "`batch_shape=`). Received: input shape="
                f"{sequences_shape}"
            )
        step_shape = (sequences_shape[0],) + sequences_shape[2:]
        first = self._cells[0]
        if isinstance(first, ConvRNNCellBase):
            if step_shape[first.channel_axis] is None:
                raise ValueError(
                    f"Layer '{self.name}': the channel dimension of the "
                    "inputs must be defined. Received: input shape="
                    f"{sequences_shape} with data_format="
                    f"'{first.data_format}'"
                )
        self._step_input_shape = step_shape
        # Build the cells with their true N-D input shapes (a
        # keras.layers.StackedRNNCells would pass `(batch, units)`).
        shape = step_shape
        for cell in self._cells:
            if isinstance(cell, keras.layers.Layer) and not cell.built:
                cell.build(shape)
                cell.built = True
            shape = tuple(cell.compute_output_shape(shape)[0])
        if isinstance(self.cell, keras.layers.StackedRNNCells):
            self.cell.built = True
        if self.stateful and self.rank is not None:
            spatial = self._cells[0]._spatial(step_shape)
            if any(n is None for n in spatial):
                raise ValueError(
                    f"Layer '{self.name}' has `stateful=True`, which needs "
                    "fixed frame sizes to hold its state. Received: input "
                    f"shape={sequences_shape}"
                )
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

    def _check_initial_state(self, sequences, initial_state):
        flat = keras.tree.flatten(initial_state)
        step_shape = (sequences.shape[0],) + tuple(sequences.shape[2:])
        _, per_cell_shapes = self._state_shapes(step_shape)
        expected = [s for shapes in per_cell_shapes for s in shapes]
        if len(flat) != len(expected):
            raise ValueError(
                f"Layer '{self.name}' expects {len(expected)} initial "
                f"state tensor(s) of shape(s) {expected}. Received: "
                f"{len(flat)} tensor(s) in initial_state"
            )
        for i, (state, shape) in enumerate(zip(flat, expected)):
            got = tuple(state.shape)
            compatible = len(got) == len(shape) and all(
                a is None or b is None or a == b for a, b in zip(got, shape)
            )
            if not compatible:
                raise ValueError(
                    f"Layer '{self.name}': initial_state[{i}] must have "
                    f"shape {shape}. Received: initial_state[{i}].shape="
                    f"{got}"
                )

    def reset_state(self):
        # keras.layers.RNN.reset_state does not flatten the states of a
        # stack of cells.
        if self.states is not None:
            for state in keras.tree.flatten(self.states):
                state.assign(ops.zeros_like(state.value))

    def _check_time_steps(self, sequences_shape):
        """No time steps: fail here, not in the backend's loop."""
        time_steps = sequences_shape[1] if len(sequences_shape) > 1 else None
        if _is_int(time_steps) and time_steps == 0:
            raise ValueError(
                f"Layer '{self.name}' needs sequences of at least one time "
                "step. Received: input shape="
                f"{tuple(sequences_shape)} (axis 1, time, has size 0)"
            )

    def _check_held_states(self, sequences):
        """A stateful layer continues only on batches and frames of the
        size it holds states for (the batch-size message is Keras's)."""
        if self.states is None:
            return
        held_batch = keras.tree.flatten(self.states)[0].shape[0]
        batch = sequences.shape[0]
        if batch is not None and held_batch is not None and batch != held_batch:
            raise ValueError(
                "If an RNN is stateful, the batch size of the input "
                "sequences must be the same as the batch size of the "
                "initial state. \n"
                f"- Expected batch size: {held_batch}\n"
                f"- Received batch size: {batch}"
            )
        step_shape = (sequences.shape[0],) + tuple(sequences.shape[2:])
        _, per_cell_shapes = self._state_shapes(step_shape)
        needed = [s for shapes in per_cell_shapes for s in shapes]
        held = keras.tree.flatten(self.states)
        for i, (state, shape) in enumerate(zip(held, needed)):
            held_shape = tuple(state.shape)
            if any(
                a is not None and b is not None and a != b
                for a, b in zip(held_shape[1:], shape[1:])
            ):
                raise ValueError(
                    f"Layer '{self.name}' has `stateful=True` and holds "
                    f"states of shape {held_shape}; these frames need "
                    f"states of shape {shape} (state {i}). A stateful "
                    "layer continues only on frames of the size it was "
                    "built for. Received: input shape="
                    f"{tuple(sequences.shape)}"
                )

    def _check_frame_sizes(self, sequences):
        """Frames smaller than a `valid` kernel: fail here, not in a conv."""
        shape = tuple(sequences.shape)
        step_shape = (shape[0],) + shape[2:]
        for cell in self._cells:
            if not isinstance(cell, ConvRNNCellBase):
                return
            cell._check_frame_size(cell._spatial(step_shape), "at call time")
            step_shape = tuple(cell.compute_output_shape(step_shape)[0])

    def call(self, sequences, initial_state=None, mask=None, training=False):
        zero_initial = False
        self._check_time_steps(tuple(sequences.shape))
        self._check_frame_sizes(sequences)
        if initial_state is None and self.stateful:
            self._check_held_states(sequences)
        if initial_state is not None:
            if not keras.tree.is_nested(initial_state):
                initial_state = [initial_state]
            self._check_initial_state(sequences, initial_state)
            if len(self._cells) > 1:
                # Accept a flat list of states for a stack, too.
                flat = list(keras.tree.flatten(initial_state))
                per_cell = []
                for cell in self._cells:
                    n = _num_states(cell)
                    per_cell.append(flat[:n])
                    flat = flat[n:]
                initial_state = self._structure_states(per_cell)
        elif not self.stateful:
            initial_state = self._zero_initial_state(sequences)
            zero_initial = True

        if mask is not None:
            states = self.states if initial_state is None else initial_state
            state_ndim = len(keras.tree.flatten(states)[0].shape)
            mask = self._broadcastable_mask(mask, state_ndim)

        if not self._steps_own_cells():
            return super().call(
                sequences,
                initial_state=initial_state,
                mask=mask,
                training=training,
            )
        if mask is None and self.uses_fused_recurrence(tuple(sequences.shape)):
            return self._fused_recurrence(
                sequences, initial_state, zero_initial, training
            )
        return self._step_own_cells(sequences, initial_state, mask, training)

    def _step_own_cells(self, sequences, initial_state, mask, training):
        """`keras.layers.RNN.call` for keras_convgru cells, without state.

        What a time step reads is an argument of the step function: the
        input projections (computed here, before the loop, when hoisting)
        and the dropout masks (drawn here, once per sequence). Nothing is
        set on the cells around the loop, so a step computes the same
        thing however often it runs (rematerialization, checkpointing).
        """
        if self.unroll and sequences.shape[1] is None:
            raise ValueError(
                f"Layer '{self.name}' has `unroll=True`, which needs a "
                "fixed number of time steps. Received: input shape="
                f"{tuple(sequences.shape)}"
            )
        initial_state = self._starting_states(initial_state)
        cells = self._cells
        input_masks, recurrent_masks = self._dropout_masks(sequences, training)
        hoisted = self.hoists_input_projection(tuple(sequences.shape))
        if hoisted:
            if input_masks[0] is not None:
                sequences = sequences * ops.expand_dims(input_masks[0], 1)
            sequences = self._project_all_steps(sequences)
        stacked = isinstance(self.cell, keras.layers.StackedRNNCells)
        copy_states = keras.backend.backend() == "torch" and self.stateful

        def step(inputs, states):
            if copy_states:
                # As keras.layers.RNN: no in-place update of a tensor that
                # autograd still needs.
                states = keras.tree.map_structure(ops.copy, states)
            per_cell = states if stacked else [states]
            x, new_states = inputs, []
            for i, cell in enumerate(cells):
                if i == 0 and hoisted:
                    projection = x
                else:
                    if input_masks[i] is not None:
                        x = x * input_masks[i]
                    projection = cell.input_projection(x)
                x, cell_states = cell.recurrent_step(
                    projection,
                    list(per_cell[i]),
                    recurrent_dropout_mask=recurrent_masks[i],
                )
                new_states.append(cell_states)
            return x, self._structure_states(new_states)

        last_output, outputs, states = backend_rnn(
            step,
            sequences,
            list(initial_state),
            go_backwards=self.go_backwards,
            mask=mask,
            unroll=self.unroll,
            input_length=sequences.shape[1],
            zero_output_for_mask=self.zero_output_for_mask,
            return_all_outputs=self.return_sequences,
        )
        return self._finish(last_output, outputs, states)

    def _finish(self, last_output, outputs, states):
        """The layer's return value from the loop's results; holds the
        states of a stateful layer."""
        states = keras.tree.map_structure(
            lambda state: ops.cast(state, self.compute_dtype), states
        )
        if self.stateful:
            for held, state in zip(
                keras.tree.flatten(self.states), keras.tree.flatten(states)
            ):
                held.assign(state)
        output = outputs if self.return_sequences else last_output
        output = ops.cast(output, self.compute_dtype)
        if self.return_state:
            return output, *states
        return output

    def _starting_states(self, initial_state):
        """The states the loop starts from, in the compute dtype: the given
        ones, or a stateful layer's held states (`initial_state=None`)."""
        if initial_state is None:
            initial_state = self.states
        return keras.tree.map_structure(
            lambda state: ops.cast(state, self.compute_dtype), initial_state
        )

    def _dropout_masks(self, sequences, training):
        """Per cell, the input and the recurrent dropout mask (or `None`).

        Drawn once per sequence, before the loop, and shared by all time
        steps and all gates: the input mask is shaped like one step's
        input of the cell, the recurrent mask like its first state.
        """
        shape = ops.shape(sequences)
        batch = shape[0]
        step_shape = (batch, *shape[2:])
        input_masks, recurrent_masks = [], []
        for cell in self._cells:
            spatial = cell._spatial(step_shape)
            state_shape = cell.state_shape(batch, spatial)
            input_mask = recurrent_mask = None
            if training and 0.0 < cell.dropout < 1.0:
                input_mask = cell.dropout_mask(step_shape, cell.dropout)
            if training and 0.0 < cell.recurrent_dropout < 1.0:
                recurrent_mask = cell.dropout_mask(
                    state_shape, cell.recurrent_dropout
                )
            input_masks.append(input_mask)
            recurrent_masks.append(recurrent_mask)
            step_shape = state_shape
        return input_masks, recurrent_masks

    def _broadcastable_mask(self, mask, state_ndim):
        """A `(batch, time)` mask as `(batch, time, 1, ..., 1)`.

        Keras's JAX loop broadcasts the per-step mask `(batch, 1)` against
        the states, which fails for N-D states; with one trailing unit axis
        per state axis after the batch (read off the state, so a custom
        cell needs no `rank`), the mask broadcasts on every backend.

        A per-pixel mask, such as `keras.layers.Masking` gives for frames
        (`(batch, time, *spatial)`: a pixel is masked when all its channels
        equal the mask value), masks a time step when every pixel of the
        frame is masked, as `Masking` masks a vector time step when all
        its features are masked.
        """
        mask = keras.tree.flatten(mask)[0]
        mask = self._time_step_mask(mask)
        for _ in range(state_ndim - 1):
            mask = ops.expand_dims(mask, -1)
        return mask

    @staticmethod
    def _time_step_mask(mask):
        """`(batch, time, ...)` -> `(batch, time)`: any unmasked entry."""
        mask = ops.cast(mask, "bool")
        if len(mask.shape) > 2:
            mask = ops.any(mask, axis=tuple(range(2, len(mask.shape))))
        return mask

    def _project_all_steps(self, sequences, time_major=False):
        """The first cell's input projection for every time step at once,
        of `(batch, time, ...)` sequences or, with `time_major`, of
        `(time, batch, ...)` ones (the fused recurrence's): the two leading
        axes are kept as they come."""
        shape = ops.shape(sequences)
        frames = ops.reshape(sequences, (-1, *shape[2:]))
        projection = self._cells[0].input_projection(frames)
        # -1 for the batch axis, not the batch size: JAX's ONNX export
        # cannot map a symbolic batch through the reshape otherwise. The
        # time axis is static, so -1 also resolves for an empty batch.
        leading = (shape[0], -1) if time_major else (-1, shape[1])
        return ops.reshape(projection, (*leading, *ops.shape(projection)[1:]))

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

    def get_config(self):
        # As keras.layers.ConvLSTM2D's, the config always has the key.
        return {
            **super().get_config(),
            "activity_regularizer": keras.regularizers.serialize(
                self.activity_regularizer
            ),
        }

    def compute_mask(self, _, mask):
        if mask is not None:
            mask = self._time_step_mask(keras.tree.flatten(mask)[0])
        output_mask = mask if self.return_sequences else None
        if self.return_state:
            n = sum(_num_states(c) for c in self._cells)
            return [output_mask] + [None] * n
        return output_mask


def cell_argument(name):
    """A read-only property of a layer: its cell's argument `name`."""

    def getter(self):
        return getattr(self.cell, name)

    getter.__name__ = name
    getter.__doc__ = f"The cell's `{name}` (read-only)."
    return property(getter)


_RNN_ARGUMENTS = (
    "activity_regularizer",
    "return_sequences",
    "return_state",
    "go_backwards",
    "stateful",
    "unroll",
    "zero_output_for_mask",
)


class ConvRecurrentLayer(ConvRNN):
    """A `ConvRNN` around one cell built from the layer's own arguments.

    The family layers (`ConvGRU1D`, ..., `ConvLSTM3D`) subclass this through
    a family base whose `__init__` writes out every argument; they set
    `cell_class`. Their config is the cell's config plus the RNN arguments,
    as `keras.layers.ConvLSTM2D`'s is, and the cell's arguments read on the
    layer (`layer.filters`, `layer.kernel_size`, ...), as on Keras's.
    """

    cell_class = None

    def __init__(self, arguments, **kwargs):
        """`arguments`: the family layer's named arguments (cell and RNN)."""
        arguments = dict(arguments)
        rnn_arguments = {name: arguments.pop(name) for name in _RNN_ARGUMENTS}
        cell = self.cell_class(
            **arguments, name="cell", dtype=kwargs.get("dtype")
        )
        super().__init__(cell, **rnn_arguments, **kwargs)

    filters = cell_argument("filters")
    kernel_size = cell_argument("kernel_size")
    strides = cell_argument("strides")
    padding = cell_argument("padding")
    data_format = cell_argument("data_format")
    dilation_rate = cell_argument("dilation_rate")
    activation = cell_argument("activation")
    recurrent_activation = cell_argument("recurrent_activation")
    use_bias = cell_argument("use_bias")
    kernel_initializer = cell_argument("kernel_initializer")
    recurrent_initializer = cell_argument("recurrent_initializer")
    bias_initializer = cell_argument("bias_initializer")
    kernel_regularizer = cell_argument("kernel_regularizer")
    recurrent_regularizer = cell_argument("recurrent_regularizer")
    bias_regularizer = cell_argument("bias_regularizer")
    kernel_constraint = cell_argument("kernel_constraint")
    recurrent_constraint = cell_argument("recurrent_constraint")
    bias_constraint = cell_argument("bias_constraint")
    dropout = cell_argument("dropout")
    recurrent_dropout = cell_argument("recurrent_dropout")
    seed = cell_argument("seed")
    normalization = cell_argument("normalization")
    norm_groups = cell_argument("norm_groups")
    norm_epsilon = cell_argument("norm_epsilon")

    def get_config(self):
        config = super().get_config()
        del config["cell"]
        cell_config = self.cell.get_config()
        for key in ("name", "trainable", "dtype"):
            cell_config.pop(key, None)
        return {**config, **cell_config}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
