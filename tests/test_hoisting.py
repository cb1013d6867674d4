"""ConvRNN computes the same numbers whether or not it hoists the input
projection out of the time loop (it chooses by the size of one step).

Every family of `tests/helpers.py`'s `FAMILIES` (ConvGRU, ConvLSTM,
TrajGRU), with random weights: both paths agree, with dropout too (the
same masks), and without training both compute the family's NumPy
reference.
"""

import functools

import keras
import numpy as np
import pytest
from helpers import FAMILIES
from helpers import family_of
from keras import ops

import keras_convgru as kc

HOIST_ALWAYS = 10**12
HOIST_NEVER = 0


def _outputs(layer_factory, x, threshold, monkeypatch, training=False):
    """The layer's outputs on one path, and its (random) weights."""
    monkeypatch.setattr(kc.ConvRNN, "max_hoisted_step_elements", threshold)
    keras.utils.set_random_seed(7)
    layer = layer_factory()
    # Keras's loop on every backend (the fused recurrence, the default on
    # JAX's CPU, projects every step at once; tests/test_fused.py).
    layer.fuse_recurrence = False
    layer.build(x.shape)
    weights = family_of(layer.cell).randomize(layer, np.random.default_rng(3))
    assert layer.hoists_input_projection(x.shape) == (threshold == HOIST_ALWAYS)
    outputs = layer(x, training=training)
    return [ops.convert_to_numpy(t) for t in keras.tree.flatten(outputs)], (
        weights
    )


# Each family's small layer, and variants of the GRU and LSTM families.
LAYERS = {
    name: functools.partial(
        family.layer, 3, return_sequences=True, return_state=True
    )
    for name, family in FAMILIES.items()
}
LAYERS.update(
    {
        "gru-reset-before": lambda: kc.ConvGRU2D(
            3, 3, strides=2, reset_after=False, return_sequences=True
        ),
        "lstm-1d-backwards": lambda: kc.ConvLSTM1D(
            2, 3, go_backwards=True, return_sequences=True
        ),
    }
)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_hoisted_and_stepped_input_projection_give_the_same_numbers(
    name, monkeypatch
):
    rank = 1 if "1d" in name else 2
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 4) + (7,) * rank + (2,)).astype("float32")
    hoisted, _ = _outputs(LAYERS[name], x, HOIST_ALWAYS, monkeypatch)
    stepped, _ = _outputs(LAYERS[name], x, HOIST_NEVER, monkeypatch)
    assert len(hoisted) == len(stepped)
    for a, b in zip(hoisted, stepped):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def _dropout_layer(family):
    return FAMILIES[family].layer(
        3,
        dropout=0.5,
        recurrent_dropout=0.5,
        seed=11,
        return_sequences=True,
    )


@pytest.mark.parametrize("family", list(FAMILIES))
def test_dropout_masks_are_drawn_once_per_sequence_on_both_paths(
    family, monkeypatch
):
    # Same seed, same masks: with dropout the two paths still agree, which
    # holds only if the stepped path shares one mask across all steps too.
    factory = functools.partial(_dropout_layer, family)
    x = np.ones((2, 4, 5, 5, 2), "float32")
    hoisted, _ = _outputs(factory, x, HOIST_ALWAYS, monkeypatch, True)
    stepped, _ = _outputs(factory, x, HOIST_NEVER, monkeypatch, True)
    no_dropout, _ = _outputs(factory, x, HOIST_ALWAYS, monkeypatch)
    np.testing.assert_allclose(hoisted[0], stepped[0], atol=1e-5, rtol=1e-5)
    # The masks are there.
    assert np.abs(hoisted[0] - no_dropout[0]).max() > 1e-2


@pytest.mark.parametrize(
    "family", [name for name, f in FAMILIES.items() if f.reference]
)
def test_without_training_both_paths_compute_the_reference(family, monkeypatch):
    factory = functools.partial(_dropout_layer, family)
    x = np.random.default_rng(1).uniform(-1, 1, (2, 3, 6, 5, 2))
    x = x.astype("float32")
    hoisted, weights = _outputs(factory, x, HOIST_ALWAYS, monkeypatch)
    stepped, _ = _outputs(factory, x, HOIST_NEVER, monkeypatch)
    np.testing.assert_allclose(hoisted[0], stepped[0], atol=1e-5)
    expected, _ = FAMILIES[family].reference(x, weights)
    np.testing.assert_allclose(
        hoisted[0], expected, atol=FAMILIES[family].reference_atol
    )


def test_layer_hoists_small_steps_and_steps_large_ones_per_sample():
    layer = kc.ConvGRU2D(16, 3, padding="same")
    layer.build((4, 10, 16, 16, 8))
    # One sample's step projection: 3 gates * 16 filters * pixels.
    assert layer.hoists_input_projection((4, 10, 16, 16, 8))
    assert not layer.hoists_input_projection((4, 10, 64, 64, 8))
    # Frames of unknown size hoist; the batch size never matters.
    assert layer.hoists_input_projection((None, 10, None, None, 8))
    for batch in (None, 1, 4, 512):
        assert layer.hoists_input_projection((batch, 10, 16, 16, 8))
        assert not layer.hoists_input_projection((batch, 10, 64, 64, 8))


class RecordingConvGRU2D(kc.ConvGRU2D):
    """ConvGRU2D that records what its documented hook decides.

    Keras's loop path only: the fused recurrence (the default on JAX's
    CPU) projects every step at once and does not ask the hook.
    """

    decisions = []

    def hoists_input_projection(self, sequences_shape):
        decision = super().hoists_input_projection(sequences_shape)
        self.decisions.append(decision)
        return decision


@pytest.mark.parametrize("side", [8, 64])
def test_fit_predict_and_train_on_batch_take_the_same_path(side):
    # Under TensorFlow's fit/predict the batch size is unknown while
    # tracing; train_on_batch may see it. The decision must not change.
    RecordingConvGRU2D.decisions = []
    inputs = keras.Input((3, side, side, 2))
    layer = RecordingConvGRU2D(4, 3, padding="same", fuse_recurrence=False)
    outputs = layer(inputs)
    model = keras.Model(inputs, outputs)
    model.compile("sgd", "mse")
    x = np.zeros((2, 3, side, side, 2), "float32")
    y = np.zeros((2, side, side, 4), "float32")
    RecordingConvGRU2D.decisions = []
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    model.predict(x, batch_size=2, verbose=0)
    model.train_on_batch(x, y)
    decisions = set(RecordingConvGRU2D.decisions)
    assert len(RecordingConvGRU2D.decisions) >= 3
    assert decisions == {side == 8}
