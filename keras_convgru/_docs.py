"""Docstrings of the rank-specific classes, written once for all ranks.

The GRU and LSTM families share their arguments and shapes; each family
supplies its equations and its own extra argument. The 1D/2D/3D classes
only differ in the names of their spatial axes and in their examples.
"""

COMMON_CELL_ARGS = """
        filters: int, the number of output channels (the state's channels).
        kernel_size: int or {rank}-tuple of ints, the convolution window.
        strides: int or {rank}-tuple of ints, strides of the input-to-state
            convolution (default 1). `strides > 1` cannot be combined with
            `dilation_rate > 1`.
        padding: `"valid"` (default) or `"same"`, padding of the
            input-to-state convolution (case-insensitive).
        data_format: `"channels_last"` or `"channels_first"`; defaults to
            `keras.config.image_data_format()`.
        dilation_rate: int or {rank}-tuple of ints, dilation of the
            input-to-state convolution (default 1).
        activation: activation of the candidate state and output (default
            `"tanh"`).
        recurrent_activation: activation of the gates (default
            `"sigmoid"`).
        use_bias: bool, whether to use biases (default `True`).
        kernel_initializer: initializer of `kernel` (default
            `"glorot_uniform"`).
        recurrent_initializer: initializer of `recurrent_kernel` (default
            `"orthogonal"`).
        bias_initializer: initializer of `bias` (default `"zeros"`).
        kernel_regularizer: regularizer of `kernel`.
        recurrent_regularizer: regularizer of `recurrent_kernel`.
        bias_regularizer: regularizer of `bias`.
        kernel_constraint: constraint of `kernel`.
        recurrent_constraint: constraint of `recurrent_kernel`.
        bias_constraint: constraint of `bias`.
        dropout: float in [0, 1], fraction of the input dropped for the
            input-to-state convolution (training only; one mask per
            sequence, shared by all gates).
        recurrent_dropout: float in [0, 1], fraction of the state dropped
            for the state-to-state convolution (training only; one mask
            per sequence, shared by all gates).
        seed: int, random seed for dropout."""

LAYER_ARGS = """
        activity_regularizer: regularizer of the layer's output.
        return_sequences: bool (default `False`), return the whole output
            sequence instead of the last output.
        return_state: bool (default `False`), also return the last states.
        go_backwards: bool (default `False`), process the sequence
            backwards and return the reversed sequence.
        stateful: bool (default `False`), the last state of each sample is
            the initial state of the same sample in the next batch (needs a
            fixed batch size and fixed frame sizes).
        unroll: bool (default `False`), unroll the time loop (needs a
            fixed number of steps).
        zero_output_for_mask: bool (default `False`), masked steps output
            zeros instead of the previous output (`return_sequences=True`
            only)."""

SPATIAL_NAMES = {1: "steps", 2: "rows, cols", 3: "depth, rows, cols"}
EXAMPLE_FRAMES = {1: (16,), 2: (16, 16), 3: (6, 16, 16)}


def _dims(values):
    return ", ".join(str(v) for v in values)


def cell_doc(family, rank, math, family_args, num_states):
    """Docstring of `<family>{rank}DCell`."""
    spatial = SPATIAL_NAMES[rank]
    frames = _dims(EXAMPLE_FRAMES[rank])
    states = "one state tensor" if num_states == 1 else "the states `[h, c]`"
    return f"""{rank}D convolutional {family} cell.

    `{family}Cell` with `rank={rank}`. Steps one frame
    `(batch, {spatial}, channels)` at a time. Use it in
    `keras_convgru.ConvRNN` (`{family}{rank}D` is exactly that) or in a
    plain `keras.layers.RNN`.
{math}
    Args:{COMMON_CELL_ARGS.format(rank=rank)}{family_args}
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: one frame `(batch, {spatial}, channels)`.
        states: list of {states}, each `(batch, *new_spatial, filters)`.
        training: Python boolean, whether dropout is active.

    Input shape:
        `(batch, {spatial}, channels)` (`channels_last`) or
        `(batch, channels, {spatial})` (`channels_first`).

    Output shape:
        `(output, new_states)`, each tensor `(batch, *new_spatial, filters)`
        (or channels first), `new_spatial` the input-to-state
        convolution's output size.

    Example:

    >>> import numpy as np
    >>> import keras
    >>> import keras_convgru as kc
    >>> cell = kc.{family}{rank}DCell(4, 3, padding="same")
    >>> rnn = keras.layers.RNN(cell)
    >>> x = np.zeros((2, 5, {frames}, 3), "float32")
    >>> tuple(rnn(x).shape)
    (2, {frames}, 4)
    """


def layer_doc(family, rank, math, family_args, state_names, intro):
    """Docstring of `<family>{rank}D`."""
    spatial = SPATIAL_NAMES[rank]
    frames = _dims(EXAMPLE_FRAMES[rank])
    none_frames = _dims([None] * rank)
    states = ", ".join(state_names)
    builtin = family.removeprefix("Conv")
    return f"""{rank}D convolutional {family} layer.
{intro}
    The layer is `keras_convgru.ConvRNN` around a `{family}{rank}DCell`. A
    step runs the gates fused, in one input-to-state convolution and one
    state-to-state convolution (two for a GRU with `reset_after=False`);
    when a step is small, the input-to-state convolution of all time steps
    runs once, before the time loop. Frame sizes may be unknown
    (`keras.Input((None, {none_frames}, channels))`).
{math}
    Args:{COMMON_CELL_ARGS.format(rank=rank)}{family_args}{LAYER_ARGS}
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a tensor `(batch, time, {spatial}, channels)`.
        initial_state: list of initial state tensors `[{states}]`, each
            `(batch, *new_spatial, filters)`. `None` means zeros.
        mask: boolean tensor `(batch, time)`; a masked step carries the
            state forward.
        training: Python boolean, whether dropout is active.

    Input shape:
        `(batch, time, {spatial}, channels)` (`channels_last`) or
        `(batch, time, channels, {spatial})` (`channels_first`).

    Output shape:
        - `return_sequences=False`: `(batch, *new_spatial, filters)`.
        - `return_sequences=True`: `(batch, time, *new_spatial, filters)`.
        - `return_state=True`: `output, {states}` (as `keras.layers.{builtin}`
          returns them), the states `(batch, *new_spatial, filters)` each.

        `new_spatial` is the input-to-state convolution's output size; with
        `channels_first` the channels come before the spatial axes.

    Example:

    >>> import numpy as np
    >>> import keras
    >>> import keras_convgru as kc
    >>> inputs = keras.Input((None, {none_frames}, 3))
    >>> outputs = kc.{family}{rank}D(8, 3, padding="same",
    ...                       return_sequences=True)(inputs)
    >>> model = keras.Model(inputs, outputs)
    >>> x = np.zeros((2, 5, {frames}, 3), "float32")
    >>> tuple(model(x).shape)
    (2, 5, {frames}, 8)
    """
