"""Finite-difference gradient check of every family's cell, in float64.

The gradient that the backend's own autodiff computes (tf.GradientTape,
jax.grad, torch.autograd) for the inputs, the initial states and every
weight is compared with central differences of the loss along random
directions: over the whole tensor for the inputs and states, and over each
gate's block of the fused weights (so every gate of every weight is
checked; the peephole kernel row by row, the normalization scales and
shifts gate block by gate block). The loss is a fixed random linear
function of the output sequence and of the final states, so every output
takes part; one sample has a masked step, so the gradient through a
masked step is checked too.

TensorFlow and PyTorch: second-order differences with a 1e-6 step agree
with autodiff to 1e-7 relative (checked to rtol 1e-6). JAX: XLA's CPU
`tanh` is only float32-accurate even in float64 (about 1e-7 absolute, in
steps), so a 1e-6 step would measure that noise; the check there uses a
1e-2 step and fourth-order differences, which agree to about 1e-4 absolute
(checked to rtol 1e-3, atol 2e-4: still far below the O(1) error of a
miswired gate or weight).

Normalization on PyTorch: Keras's `GroupNormalization` (the cells'
normalization sublayers) computes its statistics in float32 for float64
inputs on JAX and PyTorch (`keras.backend.result_type` maps 64-bit types
to 32-bit ones off TensorFlow, as all of Keras's normalization layers
use it), so those cases are float32-accurate there and take JAX's
settings on PyTorch too.

TrajGRU (and any family whose `Family.smooth` is False): the samples are
piecewise bilinear in the flows (kinks where a coordinate crosses an
integer) and leaky_relu has a kink at 0, so a large step would straddle
kinks: a 1e-6 step with second-order differences on every backend,
checked to rtol 1e-6, atol 1e-8; on JAX the candidate's activation is
`sigmoid` (JAX's eager CPU `tanh` is only float32-accurate in float64,
about 1e-7, the size of a 1e-6 step's signal; its `sigmoid` is exact).
The flows of its case are fractional and leave the frame
(`Family.hard_cases`).

Every family of `tests/helpers.py`'s `FAMILIES` is checked with its
default small layer; the other cases add the options of the GRU and LSTM
families.
"""

import keras
import numpy as np
import pytest
from helpers import FAMILIES
from helpers import backend_functions
from helpers import probe_directions
from keras import ops

import keras_convgru as kc

BATCH, TIME, SIDE, CHANNELS, FILTERS = 2, 3, 4, 2, 2
# Sample 1 skips its second step.
MASK = np.array([[1, 1, 1], [1, 0, 1]], bool)

# name: (family, options). Each family's small layer, then options.
CASES = {name: (name, {}) for name in FAMILIES}
CASES.update(
    {
        "gru-reset_before": ("gru", {"reset_after": False}),
        "gru-reset_after-layer-norm": (
            "gru",
            {"reset_after": True, "normalization": "layer"},
        ),
        "gru-reset_before-group-norm": (
            "gru",
            {"reset_after": False, "normalization": "group", "norm_groups": 2},
        ),
        "lstm-peepholes-channel-layer-norm": (
            "lstm",
            {"peepholes": "channel", "normalization": "layer"},
        ),
        "lstm-peepholes-full-group-norm": (
            "lstm",
            {"peepholes": "full", "normalization": "group", "norm_groups": 2},
        ),
    }
)


# The fused recurrence (`ConvRNN.uses_fused_recurrence`): its own backward
# pass, checked against differences too. No mask (a masked sequence steps
# through Keras's loop); nonzero initial states, so the state gradients and
# the first step's state-to-state convolution are checked.
FUSED_CASES = {
    "gru-reset_after-fused": ("gru", {"reset_after": True}),
    "lstm-fused": ("lstm", {}),
}
CASES.update(FUSED_CASES)

# Stacks whose memory cells pass their spatiotemporal memory in PredRNN's
# zigzag: the gradients flow through the memory from cell to cell and
# from the top cell back to the bottom one (the first name's family gives
# the difference settings).
STACKS = {
    "predrnn-stack": ["st_lstm", "st_lstm"],
    "predrnn-pp-stack": ["causal_lstm", "ghu", "causal_lstm"],
}
CASES.update({name: (cells[0], {}) for name, cells in STACKS.items()})
GHU_BLOCKS = {"kernel": 2, "recurrent_kernel": 2, "bias": 2}


def stack_cell(name):
    if name == "ghu":
        return kc.GradientHighwayUnit2DCell(FILTERS, 3, dtype="float64")
    return FAMILIES[name].cell(FILTERS, dtype="float64")


def weight_blocks_of(layer, name):
    """`weight -> (blocks, axis)` for the case's layer."""
    if name not in STACKS:
        family = FAMILIES[CASES[name][0]]
        return lambda weight: family.weight_blocks(weight, layer.cell)
    owners = {
        id(w): (kind, cell)
        for kind, cell in zip(STACKS[name], layer.cell.cells)
        for w in cell.weights
    }

    def blocks(weight):
        kind, cell = owners[id(weight)]
        if kind == "ghu":
            return GHU_BLOCKS.get(weight.name, 1), -1
        return FAMILIES[kind].weight_blocks(weight, cell)

    return blocks


def unread_states(name):
    """Indices of the initial states a stack never reads: every memory
    cell's own `m` but the last memory cell's (the zigzag starts from the
    last one's)."""
    if name not in STACKS:
        return set()
    index, memory_states = 0, []
    for kind in STACKS[name]:
        count = 1 if kind == "ghu" else FAMILIES[kind].states
        if kind in ("st_lstm", "causal_lstm"):
            memory_states.append(index + 2)
        index += count
    return set(memory_states[:-1])


def state_count_of(name):
    if name not in STACKS:
        return FAMILIES[CASES[name][0]].states
    return sum(1 if n == "ghu" else FAMILIES[n].states for n in STACKS[name])


def difference_settings(name):
    """(step, stencil, rtol, atol) for this backend and case; see the
    docstring."""
    backend = keras.backend.backend()
    if not FAMILIES[CASES[name][0]].smooth:
        return 1e-6, "second-order", 1e-6, 1e-8
    float32_statistics = backend == "torch" and "norm" in name
    if backend == "jax" or float32_statistics:
        return 1e-2, "fourth-order", 1e-3, 2e-4
    return 1e-6, "second-order", 1e-6, 1e-9


def make_case(name, rng):
    family_name, options = CASES[name]
    family = FAMILIES[family_name]
    if not family.smooth and keras.backend.backend() == "jax":
        options = {"activation": "sigmoid", **options}
    if name in STACKS:
        layer = kc.ConvRNN(
            [stack_cell(n) for n in STACKS[name]],
            return_sequences=True,
            return_state=True,
            dtype="float64",
        )
    else:
        layer = family.layer(
            FILTERS,
            return_sequences=True,
            return_state=True,
            dtype="float64",
            **options,
        )
    x = rng.uniform(-1, 1, size=(BATCH, TIME, SIDE, SIDE, CHANNELS))
    layer.build(x.shape)
    layer.fuse_recurrence = name in FUSED_CASES
    assert layer.uses_fused_recurrence(x.shape) == (name in FUSED_CASES)
    assert [w.path for w in layer.weights] == [
        w.path for w in layer.cell.weights
    ]
    weights = [
        np.asarray(w, "float64") for w in family.weights(layer.cell, rng, 0.4)
    ]
    states = [
        rng.uniform(-0.5, 0.5, size=(BATCH, SIDE, SIDE, FILTERS))
        for _ in range(state_count_of(name))
    ]
    if family.hard_cases is not None:
        family.hard_cases(x, states, weights)
    output_shapes = [(BATCH, TIME, SIDE, SIDE, FILTERS)] + [
        s.shape for s in states
    ]
    projections = [rng.normal(size=s) for s in output_shapes]
    return layer, [x, *states, *weights], projections


def loss_function(layer, projections, state_count):
    """loss(x, *states, *weights) through `stateless_call`."""
    non_trainable = [v.value for v in layer.non_trainable_variables]
    mask = None if layer.fuse_recurrence else MASK

    def loss(*arrays):
        x = arrays[0]
        states = list(arrays[1 : 1 + state_count])
        weights = list(arrays[1 + state_count :])
        outputs, _ = layer.stateless_call(
            weights, non_trainable, x, initial_state=states, mask=mask
        )
        return sum(
            ops.sum(o * ops.convert_to_tensor(p))
            for o, p in zip(
                keras.tree.flatten(outputs), projections, strict=True
            )
        )

    return loss


def directional_difference(value, arrays, index, direction, name):
    step, stencil, _, _ = difference_settings(name)

    def at(t):
        moved = list(arrays)
        moved[index] = arrays[index] + t * step * direction
        return value(moved)

    if stencil == "second-order":
        return (at(1) - at(-1)) / (2 * step)
    return (-at(2) + 8 * at(1) - 8 * at(-1) + at(-2)) / (12 * step)


@pytest.mark.parametrize("name", list(CASES))
def test_autodiff_gradients_match_central_differences(name, float64):
    rng = np.random.default_rng(11)
    layer, arrays, projections = make_case(name, rng)
    state_count = len(arrays) - 1 - len(layer.weights)
    assert state_count == state_count_of(name)
    blocks_of = weight_blocks_of(layer, name)
    value, gradients = backend_functions(
        loss_function(layer, projections, state_count), arrays
    )
    autodiff = gradients(arrays)
    names = (
        ["inputs"]
        + [f"initial_state[{i}]" for i in range(state_count)]
        + [w.path for w in layer.weights]
    )
    assert len(autodiff) == len(arrays) == len(names)
    _, _, rtol, atol = difference_settings(name)
    for index, (what, array, gradient) in enumerate(
        zip(names, arrays, autodiff)
    ):
        assert gradient.shape == array.shape, what
        assert np.all(np.isfinite(gradient)), what
        is_weight = index > state_count
        gates, axis = 1, -1
        if is_weight:
            weight = layer.weights[index - 1 - state_count]
            gates, axis = blocks_of(weight)
        if index - 1 in unread_states(name) and not is_weight:
            # The zigzag never reads it: no gradient, and none measured.
            assert not np.any(gradient), what
            direction = rng.normal(size=array.shape)
            difference = directional_difference(
                value, arrays, index, direction, name
            )
            # (Up to float64 rounding of the unchanged loss on JAX.)
            assert abs(difference) < 1e-12, what
            continue
        for direction in probe_directions(array.shape, gates, rng, axis):
            expected = directional_difference(
                value, arrays, index, direction, name
            )
            actual = float(np.sum(gradient * direction))
            assert expected != 0.0, what
            np.testing.assert_allclose(
                actual, expected, rtol=rtol, atol=atol, err_msg=what
            )
