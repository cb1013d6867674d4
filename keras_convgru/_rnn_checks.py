"""`ConvRNN`'s checks of its cells, its inputs and its states.

Each raises a `ValueError` that names the argument and the value, before
anything reaches a backend (Keras's wording where Keras has a message).
"""

import keras

from keras_convgru._docs import SPATIAL_NAMES
from keras_convgru._recurrence import cell_shapes
from keras_convgru._recurrence import memory_index
from keras_convgru._validation import is_int


def check_cells(cell):
    """The list of cells behind the `cell` argument; their common rank."""
    cells = list(cell) if isinstance(cell, (list, tuple)) else [cell]
    if not cells:
        raise ValueError(
            "Argument `cell` must be a cell or a non-empty list of "
            f"cells. Received: cell={cell!r}"
        )
    if len(cells) == 1 and isinstance(cells[0], keras.layers.StackedRNNCells):
        cells = list(cells[0].cells)
    for c in cells:
        shaped = callable(getattr(c, "state_shape", None)) or callable(
            getattr(c, "compute_output_shape", None)
        )
        if not shaped or getattr(c, "state_size", None) is None:
            raise ValueError(
                "ConvRNN needs convolutional RNN cells: each cell must "
                "have `state_size`, `call` and "
                "`compute_output_shape(step_input_shape)` returning "
                "(output_shape, state_shapes), or follow the cell protocol "
                "(docs/guides/cells.md). Received: "
                f"cell={c!r}"
            )
    ranks = {getattr(c, "rank", None) for c in cells}
    if len(ranks) > 1:
        raise ValueError(
            "All stacked cells must have the same rank. Received cells "
            f"of ranks {sorted(ranks, key=str)}"
        )
    check_memory_cells(cells)
    return ranks.pop()


def check_memory_cells(cells):
    """The cells that pass a spatiotemporal memory along a stack (the
    zigzag) must give it one number of channels."""
    sizes = {}
    for c in cells:
        index = memory_index(c)
        if index is not None:
            size = c.state_size
            sizes[c.name] = size[index] if isinstance(size, list) else size
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"'{name}': {n}" for name, n in sizes.items())
        raise ValueError(
            "The cells that pass the spatiotemporal memory along a stack "
            "must have the same `filters` (the memory's channels). "
            f"Received cells with filters {{{listed}}}"
        )


def check_sequences_rank(layer, sequences):
    """A wrong-rank input: name the layout, before Keras's InputSpec."""
    shape = getattr(sequences, "shape", None)
    if layer.rank is None or shape is None:
        return
    if len(shape) == layer.rank + 3:
        return
    spatial = SPATIAL_NAMES[layer.rank]
    data_format = getattr(layer._cells[0], "data_format", None)
    if data_format == "channels_first":
        layout = f"(batch, time, channels, {spatial})"
    else:
        layout = f"(batch, time, {spatial}, channels)"
    where = f" with data_format='{data_format}'" if data_format else ""
    raise ValueError(
        f"Input 0 of layer '{layer.name}' is incompatible with the "
        f"layer: expected ndim={layer.rank + 3}, found ndim={len(shape)}. "
        f"Full shape received: {tuple(shape)}. "
        f"{layer.__class__.__name__} (rank {layer.rank}) takes sequences "
        f"of frames {layout}{where}."
    )


def check_time_steps(layer, sequences_shape):
    """No time steps: fail here, not in the backend's loop."""
    time_steps = sequences_shape[1] if len(sequences_shape) > 1 else None
    if is_int(time_steps) and time_steps == 0:
        raise ValueError(
            f"Layer '{layer.name}' needs sequences of at least one time "
            "step. Received: input shape="
            f"{tuple(sequences_shape)} (axis 1, time, has size 0)"
        )


def check_build_shape(layer, sequences_shape):
    """What `build` needs: time steps, a fixed batch for `stateful`, the
    channels, and fixed frames for `stateful`."""
    check_time_steps(layer, sequences_shape)
    if layer.stateful and sequences_shape[0] is None:
        raise ValueError(
            f"Layer '{layer.name}' has `stateful=True`, which needs a "
            "fixed batch size: pass `batch_size=` to `keras.Input` (or "
            f"`batch_shape=`). Received: input shape={sequences_shape}"
        )
    first = layer._cells[0]
    axis = getattr(first, "channel_axis", None)
    step_shape = (sequences_shape[0],) + sequences_shape[2:]
    if axis is not None and step_shape[axis] is None:
        raise ValueError(
            f"Layer '{layer.name}': the channel dimension of the "
            "inputs must be defined. Received: input shape="
            f"{sequences_shape} with data_format='{first.data_format}'"
        )
    if layer.stateful and layer.rank is not None:
        if any(n is None for n in step_shape[1:]):
            raise ValueError(
                f"Layer '{layer.name}' has `stateful=True`, which needs "
                "fixed frame sizes to hold its state. Received: input "
                f"shape={sequences_shape}"
            )


def check_frame_sizes(layer, sequences):
    """Frames too small for a cell (a `valid` kernel): fail here, not in
    a convolution. The cells' `state_shape` raises on static sizes."""
    shape = tuple(sequences.shape)
    step_shape = (shape[0],) + shape[2:]
    for cell in layer._cells:
        step_shape = cell_shapes(cell, step_shape)[0]


def check_initial_state(layer, sequences, initial_state):
    flat = keras.tree.flatten(initial_state)
    step_shape = (sequences.shape[0],) + tuple(sequences.shape[2:])
    _, per_cell_shapes = layer._state_shapes(step_shape)
    expected = [s for shapes in per_cell_shapes for s in shapes]
    if len(flat) != len(expected):
        raise ValueError(
            f"Layer '{layer.name}' expects {len(expected)} initial "
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
                f"Layer '{layer.name}': initial_state[{i}] must have "
                f"shape {shape}. Received: initial_state[{i}].shape={got}"
            )


def check_held_states(layer, sequences):
    """A stateful layer continues only on batches and frames of the size
    it holds states for (the batch-size message is Keras's)."""
    if layer.states is None:
        return
    held_batch = keras.tree.flatten(layer.states)[0].shape[0]
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
    _, per_cell_shapes = layer._state_shapes(step_shape)
    needed = [s for shapes in per_cell_shapes for s in shapes]
    held = keras.tree.flatten(layer.states)
    for i, (state, shape) in enumerate(zip(held, needed)):
        held_shape = tuple(state.shape)
        if any(
            a is not None and b is not None and a != b
            for a, b in zip(held_shape[1:], shape[1:])
        ):
            raise ValueError(
                f"Layer '{layer.name}' has `stateful=True` and holds "
                f"states of shape {held_shape}; these frames need "
                f"states of shape {shape} (state {i}). A stateful "
                "layer continues only on frames of the size it was "
                "built for. Received: input shape="
                f"{tuple(sequences.shape)}"
            )
