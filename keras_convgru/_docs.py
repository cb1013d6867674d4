"""The docstrings of the family classes, built one way for all of them.

Every cell and layer of the GRU and LSTM families (the rank-generic cells
and the 1D/2D/3D cells and layers) takes its docstring from `cell_doc` or
`layer_doc`, in Keras's layout: a summary, what the class is, the
equations and the weight table, `Args:`, `Call arguments:`,
`Input shape:`, `Output shape:` and an `Example:` that runs. A family
supplies a `Family`: its name, its equations, its own extra argument and
its states; a rank-specific class differs only in the names of its
spatial axes and in its example. `help(kc.ConvGRU2D)` prints the result.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Family:
    """What a family's docstrings say beyond the shared arguments."""

    name: str  # "ConvGRU"
    math: str  # equations and weight table, indented by 4
    family_args: str  # the family's own `Args:` entries
    state_names: tuple  # ("h",) or ("h", "c")
    layer_intro: str  # what the layer is for, `{rank}` filled in

    @property
    def builtin(self):
        """The Keras layer of the same recurrence ("GRU", "LSTM")."""
        return self.name.removeprefix("Conv")


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

NORMALIZATION_ARGS = """
        normalization: `None` (default), `"layer"` or `"group"`:
            normalize each gate's block of the input and of the recurrent
            convolution inside the cell (see `N` above). `None` is the
            plain cell, with its weights unchanged.
        norm_groups: int (default 1), with `normalization="group"` the
            number of groups each gate's block of `filters` channels is
            split into; must divide `filters`. `"layer"` is one group per
            block and ignores it.
        norm_epsilon: float (default `1e-3`), the `ε` added to the
            variance."""

# What `N` is, for both families' equations.
NORMALIZATION_DEFINITION = """
    `N` (`normalization="layer"` or `"group"`, one per normalized term,
    each with its own scale `γ` and shift `β`, one per channel) normalizes
    per sample, as `keras.layers.GroupNormalization` does:

    ```
    N(y)[b, p, k] = γ[k] ⊙ (y[b, p, k] − μ[b, g]) / √(σ²[b, g] + ε) + β[k]
    ```

    with `μ[b, g]`, `σ²[b, g]` the mean and variance of sample `b`'s group
    `g` (the group of channel `k`) over every pixel `p` and the group's
    channels, and `ε` = `norm_epsilon`. The groups never straddle two
    gates: with `"layer"` each gate's block of `filters` channels is one
    group, with `"group"` it is split into `norm_groups` groups of
    `filters / norm_groups` consecutive channels. The statistics are
    computed in float32 under mixed precision (and, as Keras's
    normalization layers do off TensorFlow, for float64 inputs on JAX
    and PyTorch too). Normalizing `W * x` is per
    frame, so the input projection of all time steps still runs once,
    before the time loop; frame sizes may stay unknown. The biases (and
    peepholes) are added after the normalization. Each normalized term is
    a `keras.layers.GroupNormalization` sublayer of the cell; their
    weights `gamma` and `beta` follow the plain weights (paths
    `cell/<sublayer>/gamma`, `cell/<sublayer>/beta`), in the order of the
    table below.
"""

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
            only).
        fuse_recurrence: `"auto"` (default), `True` or `False`: run the
            fused recurrence, a loop with its own backward pass (ConvGRU
            with `reset_after=True` and ConvLSTM without peepholes, plain
            activations, no normalization). `"auto"` fuses where it was
            measured faster, on JAX with a CPU device (13x faster training
            there); `True` raises a `ValueError` saying why where it
            cannot run (see `ConvRNN.uses_fused_recurrence`)."""

SPATIAL_NAMES = {1: "steps", 2: "rows, cols", 3: "depth, rows, cols"}
EXAMPLE_FRAMES = {1: (16,), 2: (16, 16), 3: (6, 16, 16)}


def _dims(values):
    return ", ".join(str(v) for v in values)


def _states_phrase(family):
    if len(family.state_names) == 1:
        return "one state tensor"
    return "the states `[" + ", ".join(family.state_names) + "]`"


def cell_doc(family, rank=None):
    """Docstring of `<family>Cell` (`rank=None`) or `<family>{rank}DCell`."""
    name = family.name
    states = _states_phrase(family)
    if rank is None:
        spatial = "*spatial"
        summary = f"Cell of a convolutional {family.builtin}, for any rank."
        intro = f"""
    A {family.builtin} whose matrix products are convolutions, so its
    states are feature maps `(*spatial, filters)`. `rank` (1, 2 or 3) is
    the number of spatial axes; `{name}1DCell`, `{name}2DCell` and
    `{name}3DCell` fix it. Use it inside `keras_convgru.ConvRNN` or a plain
    `keras.layers.RNN`."""
        rank_arg = """
        rank: int, 1, 2 or 3: the number of spatial dimensions."""
        args = rank_arg + COMMON_CELL_ARGS.format(rank="`rank`")
        count = 1 + len(family.state_names)
        outputs = ", ".join(["(2, 8, 8, 4)"] * count)
        example = f"""
    >>> cell = kc.{name}Cell(rank=2, filters=4, kernel_size=3,
    ...                      padding="same")
    >>> layer = kc.ConvRNN(cell, return_state=True)
    >>> outputs = layer(np.zeros((2, 5, 8, 8, 3), "float32"))
    >>> [tuple(t.shape) for t in outputs]
    [{outputs}]"""
    else:
        spatial = SPATIAL_NAMES[rank]
        frames = _dims(EXAMPLE_FRAMES[rank])
        summary = f"{rank}D convolutional {family.builtin} cell."
        intro = f"""
    `{name}Cell` with `rank={rank}`. Steps one frame
    `(batch, {spatial}, channels)` at a time. Use it in
    `keras_convgru.ConvRNN` (`{name}{rank}D` is exactly that) or in a
    plain `keras.layers.RNN`."""
        args = COMMON_CELL_ARGS.format(rank=rank)
        example = f"""
    >>> cell = kc.{name}{rank}DCell(4, 3, padding="same")
    >>> rnn = keras.layers.RNN(cell)
    >>> x = np.zeros((2, 5, {frames}, 3), "float32")
    >>> tuple(rnn(x).shape)
    (2, {frames}, 4)"""
    return f"""{summary}
{intro}
{family.math}
    Args:{args}{family.family_args}
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: one frame `(batch, {spatial}, channels)` (or channels
            first).
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
    >>> import keras_convgru as kc{example}
    """


def layer_doc(family, rank):
    """Docstring of `<family>{rank}D`."""
    name = family.name
    spatial = SPATIAL_NAMES[rank]
    frames = _dims(EXAMPLE_FRAMES[rank])
    none_frames = _dims([None] * rank)
    states = ", ".join(family.state_names)
    return f"""{rank}D convolutional {family.builtin} layer.
{family.layer_intro.format(rank=rank)}
    The layer is `keras_convgru.ConvRNN` around a `{name}{rank}DCell`. A
    step runs the gates fused, in one input-to-state convolution and one
    state-to-state convolution (two for a GRU with `reset_after=False`);
    when a step is small, the input-to-state convolution of all time steps
    runs once, before the time loop. Frame sizes may be unknown
    (`keras.Input((None, {none_frames}, channels))`).
{family.math}
    Args:{COMMON_CELL_ARGS.format(rank=rank)}{family.family_args}{LAYER_ARGS}
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
        - `return_state=True`: `output, {states}` (as
          `keras.layers.{family.builtin}` returns them), the states
          `(batch, *new_spatial, filters)` each.

        `new_spatial` is the input-to-state convolution's output size; with
        `channels_first` the channels come before the spatial axes.

    Example:

    >>> import numpy as np
    >>> import keras
    >>> import keras_convgru as kc
    >>> inputs = keras.Input((None, {none_frames}, 3))
    >>> outputs = kc.{name}{rank}D(8, 3, padding="same",
    ...                       return_sequences=True)(inputs)
    >>> model = keras.Model(inputs, outputs)
    >>> x = np.zeros((2, 5, {frames}, 3), "float32")
    >>> tuple(model(x).shape)
    (2, 5, {frames}, 8)
    """


# The arguments of the 2D cells whose convolutions are all stride 1 and
# "same" (the memory cells): ConvLSTM's, less the geometry.
SAME_GEOMETRY_CELL_ARGS = """
        filters: int, the number of channels of each state.
        kernel_size: int or 2-tuple of ints, the window of every `k x k`
            convolution.
        data_format: `"channels_last"` or `"channels_first"`; defaults to
            `keras.config.image_data_format()`.
        activation: `tanh` in the equations (default `"tanh"`).
        recurrent_activation: `σ` in the equations (default `"sigmoid"`).
        use_bias: bool, whether to use biases (default `True`).
        kernel_initializer: initializer of `kernel` (default
            `"glorot_uniform"`).
        recurrent_initializer: initializer of `recurrent_kernel` and of
            every other kernel on the states (default `"orthogonal"`).
        bias_initializer: initializer of the biases (default `"zeros"`).
        kernel_regularizer: regularizer of `kernel`.
        recurrent_regularizer: regularizer of the kernels on the states.
        bias_regularizer: regularizer of the biases.
        kernel_constraint: constraint of `kernel`.
        recurrent_constraint: constraint of the kernels on the states.
        bias_constraint: constraint of the biases.
        dropout: float in [0, 1], fraction of the input dropped (training
            only; one mask per sequence).
        recurrent_dropout: float in [0, 1], fraction of the hidden state
            dropped where it enters its convolution (training only; one
            mask per sequence).
        seed: int, random seed for dropout."""

SAME_GEOMETRY_ARGS = """
        strides: `1` only (every convolution keeps the frame size); other
            values raise a `ValueError`.
        padding: `"same"` only.
        dilation_rate: `1` only."""


def same_geometry_cell_doc(summary, math, extra_args, state_names, example):
    """Docstring of a 2D cell whose convolutions keep the frame size."""
    states = ", ".join(state_names)
    return f"""{summary}
{math}
    Args:{SAME_GEOMETRY_CELL_ARGS}{extra_args}{SAME_GEOMETRY_ARGS}
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: one frame `(batch, rows, cols, channels)` (or channels
            first).
        states: the list `[{states}]`, each `(batch, rows, cols, filters)`.
        training: Python boolean, whether dropout is active.

    Input shape:
        `(batch, rows, cols, channels)` (`channels_last`) or
        `(batch, channels, rows, cols)` (`channels_first`).

    Output shape:
        `(output, [{states}])`, each `(batch, rows, cols, filters)` (or
        channels first): frames and states have one size.

    Example:

    >>> import numpy as np
    >>> import keras
    >>> import keras_convgru as kc{example}
    """


def same_geometry_layer_doc(summary, math, extra_args, state_names, example):
    """Docstring of the layer around such a cell."""
    states = ", ".join(state_names)
    return f"""{summary}
{math}
    Args:{SAME_GEOMETRY_CELL_ARGS}{extra_args}{SAME_GEOMETRY_ARGS}{LAYER_ARGS}
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a tensor `(batch, time, rows, cols, channels)`.
        initial_state: list of initial state tensors `[{states}]`, each
            `(batch, rows, cols, filters)`. `None` means zeros.
        mask: boolean tensor `(batch, time)`; a masked step carries the
            states forward.
        training: Python boolean, whether dropout is active.

    Input shape:
        `(batch, time, rows, cols, channels)` (`channels_last`) or
        `(batch, time, channels, rows, cols)` (`channels_first`).

    Output shape:
        - `return_sequences=False`: `(batch, rows, cols, filters)`.
        - `return_sequences=True`: `(batch, time, rows, cols, filters)`.
        - `return_state=True`: `[output, {states}]`, each state
          `(batch, rows, cols, filters)`.

        With `channels_first` the channels come before the spatial axes.

    Example:

    >>> import numpy as np
    >>> import keras
    >>> import keras_convgru as kc{example}
    """
