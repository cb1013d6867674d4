"""What holds for the plain layers holds with peepholes and normalization.

Masks, `go_backwards` and `initial_state` are covered for any arguments by
tests/test_properties.py, saving by tests/test_serialization.py; here:
`stateful`, stacks in `ConvRNN`, dropout, frames of unknown size and mixed
precision, each against the same layer run another way.
"""

import keras
import numpy as np
import pytest
from helpers import assert_close
from helpers import randomize_weights
from keras import ops

import keras_convgru as kc

OPTIONS = {
    "lstm-peepholes-channel": (kc.ConvLSTM2D, {"peepholes": "channel"}),
    "lstm-peepholes-full-layer-norm": (
        kc.ConvLSTM2D,
        {"peepholes": "full", "normalization": "layer"},
    ),
    "lstm-group-norm": (
        kc.ConvLSTM2D,
        {"normalization": "group", "norm_groups": 2},
    ),
    "gru-layer-norm": (kc.ConvGRU2D, {"normalization": "layer"}),
    "gru-reset_before-group-norm": (
        kc.ConvGRU2D,
        {"normalization": "group", "norm_groups": 2, "reset_after": False},
    ),
}
UNKNOWN_SIZES = [name for name in OPTIONS if "full" not in name]
# Peepholes of both kinds, both normalizations, both families (the slower
# tests: each case compiles a loop or two on JAX).
SOME = [
    "lstm-peepholes-full-layer-norm",
    "lstm-group-norm",
    "gru-reset_before-group-norm",
]


def make(name, **arguments):
    cls, options = OPTIONS[name]
    return cls(2, 3, padding="same", **options, **arguments)


def randomize(layer, rng):
    return randomize_weights(layer, rng, scale=0.4)


@pytest.mark.parametrize("name", SOME)
def test_stateful_layer_continues_like_one_long_sequence(name, rng):
    x = rng.normal(size=(2, 6, 4, 4, 1)).astype("float32")
    whole = make(name, return_sequences=True)
    whole.build(x.shape)
    weights = randomize(whole, rng)
    inputs = keras.Input(batch_shape=(2, 3, 4, 4, 1))
    stateful = make(name, return_sequences=True, stateful=True)
    model = keras.Model(inputs, stateful(inputs))
    stateful.set_weights(weights)
    halves = [model(x[:, :3]), model(x[:, 3:])]
    assert_close(ops.concatenate(halves, axis=1), whole(x))


@pytest.mark.parametrize("name", list(OPTIONS))
def test_stack_in_conv_rnn_equals_the_two_layers_in_sequence(name, rng):
    x = rng.normal(size=(2, 4, 5, 5, 2)).astype("float32")
    first = make(name, return_sequences=True)
    second = make(name, return_sequences=True)
    y = first(x)
    second.build(y.shape)
    randomize(first, rng)
    randomize(second, rng)
    stack = kc.ConvRNN([first.cell, second.cell], return_sequences=True)
    # The cells are shared: the stack steps the very same weights.
    assert_close(stack(x), second(first(x)))


@pytest.mark.parametrize("name", list(OPTIONS))
def test_dropout_changes_training_outputs_only(name, rng):
    x = rng.normal(size=(2, 4, 5, 5, 2)).astype("float32")
    plain = make(name, return_sequences=True)
    dropped = make(
        name, return_sequences=True, dropout=0.3, recurrent_dropout=0.3, seed=3
    )
    plain.build(x.shape)
    dropped.build(x.shape)
    dropped.set_weights(randomize(plain, rng))
    assert_close(dropped(x, training=False), plain(x))
    training = ops.convert_to_numpy(dropped(x, training=True))
    assert np.all(np.isfinite(training))
    assert np.max(np.abs(training - ops.convert_to_numpy(plain(x)))) > 1e-3


@pytest.mark.parametrize("name", UNKNOWN_SIZES)
def test_unknown_frame_sizes_give_the_outputs_of_static_ones(name, rng):
    inputs = keras.Input((None, None, None, 1))
    dynamic = make(name)
    model = keras.Model(inputs, dynamic(inputs))
    weights = randomize(dynamic, rng)
    for side in (3, 6):
        x = rng.normal(size=(2, 3, side, side + 1, 1)).astype("float32")
        static = make(name)
        static.build(x.shape)
        static.set_weights(weights)
        assert_close(model(x), static(x))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("name", SOME)
def test_mixed_precision_computes_in_half_close_to_float32(
    name, policy, rng, float32_policy
):
    x = rng.normal(size=(2, 4, 5, 5, 2)).astype("float32")
    reference = make(name, return_state=True)
    reference.build(x.shape)
    weights = randomize(reference, rng)
    keras.mixed_precision.set_dtype_policy(policy)
    layer = make(name, return_state=True)
    layer.build(x.shape)
    layer.set_weights(weights)
    assert all(w.dtype == "float32" for w in layer.weights)
    outputs = layer(x)
    half = policy.split("_")[1]
    for tensor in outputs:
        assert keras.backend.standardize_dtype(tensor.dtype) == half
    assert_close(outputs, reference(x), atol=5e-2)
