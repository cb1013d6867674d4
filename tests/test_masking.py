"""Masks: from `keras.layers.Masking` through our layers to the next one.

Keras 3.16's `RNN.__init__` sets `supports_masking = False`; our layers
declare their own support, so on every Keras from 3.8 on a mask reaches
them and the layer after them, without Keras's "does not support masking"
warning. Masked steps carry the state forward, as in Keras (checked
against the same layer given the `(batch, time)` mask directly, and
against a NumPy loop for a custom cell that has no `rank`).
"""

import warnings

import keras
import numpy as np
import pytest
from keras import ops

import keras_convgru as kc


class MaskRecorder(keras.layers.Layer):
    """Identity layer that keeps the mask it was called with."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.masks = []

    def call(self, inputs, mask=None):
        self.masks.append(mask)
        return inputs


def padded_frames():
    """Two sequences of 4 frames; the last frames of the first are zeros."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 1.0, size=(2, 4, 5, 5, 2)).astype("float32")
    x[0, 2:] = 0.0  # padding: frames 2 and 3 of sample 0
    expected_mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], bool)
    return x, expected_mask


LAYERS = {
    "ConvGRU2D": lambda: kc.ConvGRU2D(3, 3, padding="same", seed=1),
    "ConvLSTM2D": lambda: kc.ConvLSTM2D(3, 3, padding="same", seed=1),
    "ConvRNN stack": lambda: kc.ConvRNN(
        [
            kc.ConvGRU2DCell(3, 3, padding="same"),
            kc.ConvLSTM2DCell(2, 3, padding="same"),
        ]
    ),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_masking_mask_reaches_the_next_layer_without_a_warning(name):
    x, expected_mask = padded_frames()
    layer = LAYERS[name]()
    layer.return_sequences = True
    recorder = MaskRecorder()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        inputs = keras.Input((4, 5, 5, 2))
        masked = keras.layers.Masking(0.0)(inputs)
        outputs = recorder(layer(masked))
        model = keras.Model(inputs, outputs)
        actual = ops.convert_to_numpy(model(x))
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "mask" in m.lower()], messages

    eager_mask = ops.convert_to_numpy(recorder.masks[-1])
    np.testing.assert_array_equal(eager_mask, expected_mask)

    # The masked steps carry the state: the same as giving the mask.
    direct = ops.convert_to_numpy(layer(x, mask=expected_mask))
    np.testing.assert_allclose(actual, direct, atol=1e-6)
    np.testing.assert_allclose(actual[0, 2], actual[0, 1], atol=1e-6)
    np.testing.assert_allclose(actual[0, 3], actual[0, 1], atol=1e-6)
    assert np.abs(actual[1, 2] - actual[1, 1]).max() > 1e-4


def test_layers_declare_masking_support():
    for name, make in LAYERS.items():
        assert make().supports_masking, name


class PointwiseCell(keras.layers.Layer):
    """A custom cell with N-D states and no `rank`: h' = tanh(a x + b h)."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.state_size = channels
        self.output_size = channels

    def build(self, input_shape):
        channels = input_shape[-1]
        self.a = self.add_weight(shape=(channels,), initializer="ones")
        self.b = self.add_weight(shape=(channels,), initializer="ones")

    def call(self, inputs, states):
        h = ops.tanh(self.a * inputs + self.b * states[0])
        return h, [h]

    def compute_output_shape(self, step_shape):
        return tuple(step_shape), [tuple(step_shape)]


def test_custom_cell_without_rank_steps_masked_sequences():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 5, 4, 4, 3)).astype("float32")
    mask = np.array([[1, 1, 0, 1, 0], [1, 0, 0, 1, 1]], bool)
    layer = kc.ConvRNN(PointwiseCell(3), return_sequences=True)
    actual = ops.convert_to_numpy(layer(x, mask=mask))

    # NumPy loop: a masked step keeps the state and repeats the output.
    h = np.zeros((2, 4, 4, 3), "float32")
    expected = []
    for t in range(5):
        new = np.tanh(x[:, t] + h)
        keep = mask[:, t][:, None, None, None]
        h = np.where(keep, new, h)
        expected.append(h)
    np.testing.assert_allclose(actual, np.stack(expected, 1), atol=1e-5)
