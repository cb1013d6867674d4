"""Finite-difference gradient check of both cells, in float64.

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
"""

import contextlib

import keras
import numpy as np
import pytest
from keras import ops

import keras_convgru as kc

BATCH, TIME, SIDE, CHANNELS, FILTERS = 2, 3, 4, 2, 2
# Sample 1 skips its second step.
MASK = np.array([[1, 1, 1], [1, 0, 1]], bool)

CASES = {
    "gru-reset_after": (kc.ConvGRU2D, {"reset_after": True}),
    "gru-reset_before": (kc.ConvGRU2D, {"reset_after": False}),
    "lstm": (kc.ConvLSTM2D, {}),
    "gru-reset_after-layer-norm": (
        kc.ConvGRU2D,
        {"reset_after": True, "normalization": "layer"},
    ),
    "gru-reset_before-group-norm": (
        kc.ConvGRU2D,
        {"reset_after": False, "normalization": "group", "norm_groups": 2},
    ),
    "lstm-peepholes-channel-layer-norm": (
        kc.ConvLSTM2D,
        {"peepholes": "channel", "normalization": "layer"},
    ),
    "lstm-peepholes-full-group-norm": (
        kc.ConvLSTM2D,
        {"peepholes": "full", "normalization": "group", "norm_groups": 2},
    ),
}


# The fused recurrence (`ConvRNN.uses_fused_recurrence`): its own backward
# pass, checked against differences too. No mask (a masked sequence steps
# through Keras's loop); nonzero initial states, so the state gradients and
# the first step's state-to-state convolution are checked.
FUSED_CASES = {
    "gru-reset_after-fused": (kc.ConvGRU2D, {"reset_after": True}),
    "lstm-fused": (kc.ConvLSTM2D, {}),
}
CASES.update(FUSED_CASES)


def difference_settings(name=""):
    """(step, stencil, rtol, atol) for this backend and case; see the
    docstring."""
    backend = keras.backend.backend()
    float32_statistics = backend == "torch" and "norm" in name
    if backend == "jax" or float32_statistics:
        return 1e-2, "fourth-order", 1e-3, 2e-4
    return 1e-6, "second-order", 1e-6, 1e-9


@pytest.fixture
def float64():
    """JAX computes in float32 unless 64-bit mode is on; scope it."""
    if keras.backend.backend() == "jax":
        import jax

        with jax.enable_x64(True):
            yield
    else:
        with contextlib.nullcontext():
            yield


def make_case(name, rng):
    layer_class, options = CASES[name]
    layer = layer_class(
        FILTERS,
        3,
        padding="same",
        return_sequences=True,
        return_state=True,
        dtype="float64",
        **options,
    )
    x = rng.uniform(-1, 1, size=(BATCH, TIME, SIDE, SIDE, CHANNELS))
    layer.build(x.shape)
    layer.fuse_recurrence = name in FUSED_CASES
    assert layer.uses_fused_recurrence(x.shape) == (name in FUSED_CASES)
    weights = [rng.normal(scale=0.4, size=w.shape) for w in layer.weights]
    state_count = 1 if layer_class is kc.ConvGRU2D else 2
    states = [
        rng.uniform(-0.5, 0.5, size=(BATCH, SIDE, SIDE, FILTERS))
        for _ in range(state_count)
    ]
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
            for o, p in zip(outputs, projections)
        )

    return loss


def backend_functions(loss, arrays):
    """(value(arrays) -> float, gradients(arrays) -> arrays), compiled
    where the backend compiles, with the backend's own autodiff."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(loss)

        def value(arrays):
            return float(compiled(*[tf.constant(a) for a in arrays]))

        def gradients(arrays):
            tensors = [tf.constant(a) for a in arrays]
            with tf.GradientTape() as tape:
                tape.watch(tensors)
                result = loss(*tensors)
            return tape.gradient(result, tensors)

    elif backend == "jax":
        import jax

        # One compilation per case: the value comes with its gradient.
        value_and_grad = jax.jit(
            jax.value_and_grad(loss, argnums=tuple(range(len(arrays))))
        )

        def value(arrays):
            return float(value_and_grad(*arrays)[0])

        def gradients(arrays):
            return value_and_grad(*arrays)[1]

    elif backend == "torch":
        import torch

        def value(arrays):
            with torch.no_grad():
                return float(loss(*[torch.tensor(a) for a in arrays]))

        def gradients(arrays):
            tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
            return torch.autograd.grad(loss(*tensors), tensors)

    else:
        raise AssertionError(f"no autodiff written for backend {backend}")
    return value, lambda arrays: [
        ops.convert_to_numpy(g) for g in gradients(arrays)
    ]


def directional_difference(value, arrays, index, direction, name=""):
    step, stencil, _, _ = difference_settings(name)

    def at(t):
        moved = list(arrays)
        moved[index] = arrays[index] + t * step * direction
        return value(moved)

    if stencil == "second-order":
        return (at(1) - at(-1)) / (2 * step)
    return (-at(2) + 8 * at(1) - 8 * at(-1) + at(-2)) / (12 * step)


def probe_directions(shape, gates, rng, axis=-1):
    """Random directions: over the whole tensor, or (fused weights) one per
    gate block of `axis`, so every gate of every weight is probed."""
    if gates == 1:
        return [rng.normal(size=shape)]
    axis = axis % len(shape)
    width = shape[axis] // gates
    directions = []
    for gate in range(gates):
        v = np.zeros(shape)
        block = (slice(None),) * axis + (
            slice(gate * width, (gate + 1) * width),
        )
        v[block] = rng.normal(size=v[block].shape)
        directions.append(v)
    return directions


def weight_blocks(weight, cell):
    """(blocks, axis) of a weight: one probe per gate (or peephole row)."""
    if weight.name == "peephole_kernel":
        return 3, 0  # rows wci, wcf, wco
    if weight.name in ("gamma", "beta"):
        return weight.shape[0] // cell.filters, -1  # one per gate block
    return cell.gate_count, -1


@pytest.mark.parametrize("name", list(CASES))
def test_autodiff_gradients_match_central_differences(name, float64):
    rng = np.random.default_rng(11)
    layer, arrays, projections = make_case(name, rng)
    state_count = len(arrays) - 1 - len(layer.weights)
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
            gates, axis = weight_blocks(weight, layer.cell)
        for direction in probe_directions(array.shape, gates, rng, axis):
            expected = directional_difference(
                value, arrays, index, direction, name
            )
            actual = float(np.sum(gradient * direction))
            assert expected != 0.0, what
            np.testing.assert_allclose(
                actual, expected, rtol=rtol, atol=atol, err_msg=what
            )
