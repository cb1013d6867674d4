"""How `ConvRNN` runs a sequence: the path, the loops and the result.

`ConvRNN.call` asks `path` which of three ways a call takes, and runs it:

* `"stepped"`: the keras_convgru cell protocol (`keras_convgru._cell_base`)
  through Keras's backend loop, with everything a step reads passed as an
  argument: the input projections (computed before the loop when a step
  is small: hoisting), the dropout masks (drawn once per sequence) and,
  in a stack, the spatiotemporal memory passed from cell to cell (the
  zigzag);
* `"fused"`: one ConvGRU or ConvLSTM cell through
  `keras_convgru._fused`, a loop with its own backward pass;
* `"keras"`: cells outside the protocol, stepped by
  `keras.layers.RNN.call`.
"""

import math

import keras
from keras import ops

from keras_convgru import _conv_ops
from keras_convgru._cell_base import ConvRNNCellBase
from keras_convgru._cell_base import dropout_mask
from keras_convgru._fused import gru_sequence
from keras_convgru._fused import lstm_sequence
from keras_convgru._keras_internals import rnn as backend_rnn
from keras_convgru._validation import is_int
from keras_convgru._validation import validate_fuse_recurrence

STEPPED, FUSED, KERAS = "stepped", "fused", "keras"


def follows_protocol(cell):
    """Whether `ConvRNN` can step `cell` itself (the cell protocol).

    A keras_convgru cell whose `call` a subclass overrides is stepped by
    `keras.layers.RNN`, through that `call`.
    """
    if isinstance(cell, ConvRNNCellBase):
        return type(cell).call is ConvRNNCellBase.call
    return all(
        callable(getattr(cell, name, None))
        for name in ("input_projection", "recurrent_step", "state_shape")
    )


def num_states(cell):
    size = cell.state_size
    return len(size) if isinstance(size, (list, tuple)) else 1


def memory_index(cell):
    """The index of the cell's spatiotemporal memory in its states."""
    return getattr(cell, "memory_state_index", None)


def cell_shapes(cell, step_shape):
    """`(output_shape, [state_shape, ...])` of a cell for a step input."""
    if follows_protocol(cell):
        data_format = getattr(cell, "data_format", "channels_last")
        frames = _conv_ops.frame_shape(step_shape, data_format)
        shape = tuple(cell.state_shape(step_shape[0], frames))
        return shape, [shape] * num_states(cell)
    output_shape, state_shapes = cell.compute_output_shape(step_shape)
    return tuple(output_shape), [tuple(s) for s in state_shapes]


# -- which path --------------------------------------------------------------


def fused_by_default():
    """Where `fuse_recurrence="auto"` fuses: JAX on a CPU (measured;
    docs/performance.md)."""
    if keras.backend.backend() != "jax":
        return False
    devices = keras.distribution.list_devices()
    return bool(devices) and str(devices[0]).lower().startswith("cpu")


def fused_obstacle(layer, sequences_shape=None, mask=None):
    """Why the fused recurrence cannot run this layer (a sentence), or
    `None`. Without `sequences_shape`, what the layer alone decides."""
    cells = layer._cells
    if not all(follows_protocol(cell) for cell in cells):
        return "its cells are stepped by `keras.layers.RNN`"
    if len(cells) != 1:
        return f"the layer has {len(cells)} cells (a stack)"
    if layer.unroll:
        return "`unroll=True`"
    if layer.compute_dtype not in ("float32", "float64"):
        return (
            f"the compute dtype is {layer.compute_dtype} (only float32 and "
            "float64)"
        )
    obstacle = getattr(cells[0], "fused_obstacle", None)
    if obstacle is None:
        return "it covers ConvGRU and ConvLSTM cells only"
    obstacle = obstacle()
    if obstacle is not None or sequences_shape is None:
        return obstacle
    if sequences_shape[1] is None:
        return "the number of time steps is unknown"
    if mask is not None:
        return "a mask is given (masked steps carry the state)"
    return None


def uses_fused_recurrence(layer, sequences_shape, mask=None):
    """See `ConvRNN.uses_fused_recurrence`."""
    fuse = validate_fuse_recurrence(layer.fuse_recurrence)
    if fuse is False or (fuse == "auto" and not fused_by_default()):
        return False
    obstacle = fused_obstacle(layer, tuple(sequences_shape), mask)
    if obstacle is not None and fuse is True:
        raise ValueError(
            f"Layer '{layer.name}' has fuse_recurrence=True, but the fused "
            f"recurrence cannot run: {obstacle}. Use "
            "fuse_recurrence='auto' (it fuses where it can and helps) or "
            "False."
        )
    return obstacle is None


def hoists_input_projection(layer, sequences_shape):
    """See `ConvRNN.hoists_input_projection`."""
    if not all(follows_protocol(cell) for cell in layer._cells):
        return False
    cell = layer._cells[0]
    channels = getattr(cell, "projection_channels", None)
    step_shape = (1,) + tuple(sequences_shape[2:])
    spatial = cell_shapes(cell, step_shape)[0]
    spatial = _conv_ops.frame_shape(spatial, cell.data_format)
    if not all(is_int(n) for n in spatial):
        return True
    if channels is None:
        return False
    elements = channels * math.prod(spatial)
    return elements <= layer.max_hoisted_step_elements


def path(layer, sequences_shape, mask):
    """`STEPPED`, `FUSED` or `KERAS`: how `ConvRNN.call` runs."""
    if not all(follows_protocol(cell) for cell in layer._cells):
        return KERAS
    if layer.uses_fused_recurrence(sequences_shape, mask):
        return FUSED
    return STEPPED


# -- what every path shares ------------------------------------------------


def broadcastable_mask(mask, state_ndim):
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
    mask = time_step_mask(mask)
    for _ in range(state_ndim - 1):
        mask = ops.expand_dims(mask, -1)
    return mask


def time_step_mask(mask):
    """`(batch, time, ...)` -> `(batch, time)`: any unmasked entry."""
    mask = ops.cast(mask, "bool")
    if len(mask.shape) > 2:
        mask = ops.any(mask, axis=tuple(range(2, len(mask.shape))))
    return mask


def starting_states(layer, initial_state):
    """The states the loop starts from, in the compute dtype: the given
    ones, or a stateful layer's held states (`initial_state=None`)."""
    if initial_state is None:
        initial_state = layer.states
    return keras.tree.map_structure(
        lambda state: ops.cast(state, layer.compute_dtype), initial_state
    )


def dropout_masks(cells, sequences, training):
    """Per cell, the input and the recurrent dropout mask (or `None`).

    Drawn once per sequence, before the loop, and shared by all time
    steps and all gates: the input mask is shaped like one step's input
    of the cell, the recurrent mask like its first state.
    """
    shape = ops.shape(sequences)
    batch = shape[0]
    step_shape = (batch, *shape[2:])
    input_masks, recurrent_masks = [], []
    for cell in cells:
        frames = _conv_ops.frame_shape(step_shape, cell.data_format)
        state_shape = tuple(cell.state_shape(batch, frames))
        rate = getattr(cell, "dropout", 0.0)
        recurrent_rate = getattr(cell, "recurrent_dropout", 0.0)
        input_mask = recurrent_mask = None
        if training and 0.0 < rate < 1.0:
            input_mask = dropout_mask(cell, step_shape, rate)
        if training and 0.0 < recurrent_rate < 1.0:
            recurrent_mask = dropout_mask(cell, state_shape, recurrent_rate)
        input_masks.append(input_mask)
        recurrent_masks.append(recurrent_mask)
        step_shape = state_shape
    return input_masks, recurrent_masks


def project_all_steps(cell, sequences, time_major=False):
    """The cell's input projection for every time step at once, of
    `(batch, time, ...)` sequences or, with `time_major`, of
    `(time, batch, ...)` ones (the fused recurrence's): the two leading
    axes are kept as they come."""
    shape = ops.shape(sequences)
    frames = ops.reshape(sequences, (-1, *shape[2:]))
    projection = cell.input_projection(frames)
    # -1 for the batch axis, not the batch size: JAX's ONNX export cannot
    # map a symbolic batch through the reshape otherwise. The time axis is
    # static, so -1 also resolves for an empty batch.
    leading = (shape[0], -1) if time_major else (-1, shape[1])
    return ops.reshape(projection, (*leading, *ops.shape(projection)[1:]))


def finish(layer, last_output, outputs, states):
    """The layer's return value from the loop's results; holds the
    states of a stateful layer."""
    states = keras.tree.map_structure(
        lambda state: ops.cast(state, layer.compute_dtype), states
    )
    if layer.stateful:
        for held, state in zip(
            keras.tree.flatten(layer.states), keras.tree.flatten(states)
        ):
            held.assign(state)
    output = outputs if layer.return_sequences else last_output
    output = ops.cast(output, layer.compute_dtype)
    if layer.return_state:
        return output, *states
    return output


# -- the paths -------------------------------------------------------------


def step_stack(
    cells,
    inputs,
    per_cell,
    input_masks=None,
    recurrent_masks=None,
    hoisted=False,
    loss_cells=(),
):
    """One time step of a stack of protocol cells, a pure function.

    Args:
        cells: the cells, bottom first.
        inputs: the step's frames, or with `hoisted` the first cell's
            input projection of them.
        per_cell: each cell's list of states before the step.
        input_masks, recurrent_masks: per cell, `None` or its dropout
            mask for the sequence.
        loss_cells: indices of the cells whose step loss is wanted
            (`recurrent_step_and_loss`).

    Returns:
        `(output, new_states, loss_terms)`: the last cell's output, each
        cell's new states, and the loss cells' per-sample terms.

    The zigzag memory: the first memory cell reads the memory that the
    last memory cell holds from the previous step, each further one the
    memory that the memory cell before it has just written.
    """
    count = len(cells)
    input_masks = input_masks or [None] * count
    recurrent_masks = recurrent_masks or [None] * count
    memory_cells = [
        i for i, cell in enumerate(cells) if memory_index(cell) is not None
    ]
    memory = None
    if memory_cells:
        last = memory_cells[-1]
        memory = per_cell[last][memory_index(cells[last])]
    x, new_states, terms = inputs, [], []
    for i, cell in enumerate(cells):
        if i == 0 and hoisted:
            projection = x
        else:
            if input_masks[i] is not None:
                x = x * input_masks[i]
            projection = cell.input_projection(x)
        cell_states = list(per_cell[i])
        m = memory_index(cell)
        if m is not None:
            cell_states[m] = memory
        if i in loss_cells:
            x, cell_states, term = cell.recurrent_step_and_loss(
                projection,
                cell_states,
                recurrent_dropout_mask=recurrent_masks[i],
            )
            terms.append(term)
        else:
            x, cell_states = cell.recurrent_step(
                projection,
                cell_states,
                recurrent_dropout_mask=recurrent_masks[i],
            )
        if m is not None:
            memory = cell_states[m]
        new_states.append(list(cell_states))
    return x, new_states, terms


def run_stepped(layer, sequences, initial_state, mask, training):
    """`keras.layers.RNN.call` for protocol cells, without state.

    What a time step reads is an argument of the step function: the input
    projections (computed here, before the loop, when hoisting), the
    dropout masks (drawn here, once per sequence) and the spatiotemporal
    memory. Nothing is set on the cells around the loop, so a step
    computes the same thing however often it runs (rematerialization,
    checkpointing).

    Zigzag memory (PredRNN): at step `t` the first memory cell of the
    stack reads the memory that the last memory cell wrote at `t - 1` (its
    own state), and each further memory cell reads the memory that the
    memory cell before it wrote at `t`. Each cell's states are its own.
    """
    initial_state = starting_states(layer, initial_state)
    cells = layer._cells
    input_masks, recurrent_masks = dropout_masks(cells, sequences, training)
    hoisted = layer.hoists_input_projection(tuple(sequences.shape))
    if hoisted:
        if input_masks[0] is not None:
            sequences = sequences * ops.expand_dims(input_masks[0], 1)
        sequences = project_all_steps(cells[0], sequences)
    stacked = layer.is_stack
    copy_states = keras.backend.backend() == "torch" and layer.stateful
    # Cells with a loss per step (PredRNN-V2's decoupling), in training:
    # the loop carries one sum per sample and cell, ahead of the cells'
    # states (Keras's masked loops read the previous output from the
    # last cell's first state).
    loss_cells = [
        i
        for i, cell in enumerate(cells)
        if training and getattr(cell, "step_loss_weight", 0) > 0
    ]
    loop_states = list(initial_state)
    if loss_cells:
        batch = ops.shape(sequences)[0]
        sums = [
            ops.zeros((batch,) + (1,) * (layer.rank + 1), layer.compute_dtype)
            for _ in loss_cells
        ]
        per_cell = initial_state if stacked else [initial_state]
        loop_states = [sums, *[list(states) for states in per_cell]]

    def step(inputs, states):
        if copy_states:
            # As keras.layers.RNN: no in-place update of a tensor that
            # autograd still needs.
            states = keras.tree.map_structure(ops.copy, states)
        if loss_cells:
            sums, *per_cell = states
            sums = list(sums)
        else:
            per_cell = states if stacked else [states]
        x, new_states, terms = step_stack(
            cells,
            inputs,
            per_cell,
            input_masks,
            recurrent_masks,
            hoisted=hoisted,
            loss_cells=loss_cells,
        )
        for k, term in enumerate(terms):
            sums[k] = sums[k] + ops.reshape(term, ops.shape(sums[k]))
        if loss_cells:
            return x, [sums, *[list(s) for s in new_states]]
        return x, layer._structure_states(new_states)

    last_output, outputs, states = backend_rnn(
        step,
        sequences,
        loop_states,
        go_backwards=layer.go_backwards,
        mask=mask,
        unroll=layer.unroll,
        input_length=sequences.shape[1],
        zero_output_for_mask=layer.zero_output_for_mask,
        return_all_outputs=layer.return_sequences,
    )
    if loss_cells:
        sums, *per_cell = states
        states = layer._structure_states(per_cell)
        steps = ops.cast(ops.shape(sequences)[1], layer.compute_dtype)
        for k, i in enumerate(loss_cells):
            weight = cells[i].step_loss_weight
            layer.add_loss(weight * ops.mean(sums[k]) / steps)
    return finish(layer, last_output, outputs, states)


def run_fused(layer, sequences, initial_state, zero_initial, training):
    """One ConvGRU or ConvLSTM cell through `keras_convgru._fused`."""
    (cell,) = layer._cells
    initial_state = keras.tree.flatten(starting_states(layer, initial_state))
    masks = dropout_masks([cell], sequences, training)
    (input_mask,), (recurrent_mask,) = masks
    if input_mask is not None:
        sequences = sequences * ops.expand_dims(input_mask, 1)
    if layer.go_backwards:
        sequences = ops.flip(sequences, axis=1)
    # Time-major from here on: the loops read their steps off the leading
    # axis (the input has fewer channels than the projection).
    ndim = len(sequences.shape)
    projection = project_all_steps(
        cell,
        ops.transpose(sequences, (1, 0, *range(2, ndim))),
        time_major=True,
    )
    if cell.fused_kind == "lstm":
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
    if layer.return_sequences:
        outputs = ops.transpose(outputs, (1, 0, *range(2, ndim)))
    return finish(layer, states[0], outputs, states)
