"""Portability: `.keras` files across backends, and TensorFlow SavedModel.

The cross-backend matrix saves one model (ConvGRU2D, ConvLSTM2D and a
ConvRNN over stacked GRU and LSTM cells) on TensorFlow, JAX and PyTorch,
then loads all three files on each of them: every ordered pair of
backends, the same one included. The pytest process does the work of its
own backend; each other backend runs in one subprocess (KERAS_BACKEND
set), both at once.
Each loaded model must have bit-identical weights and predict what the
saving backend predicted; each saving backend's prediction must
match the NumPy reference (tests/reference.py) run through the same three
layers.

These tests run once per CI run, in the TensorFlow-backend session (see
the `tensorflow_session` marker in conftest.py): the subprocesses cover
every backend whatever the session's backend is.
"""

import os
import time

import keras
import numpy as np
import pytest
import reference
from helpers import Job
from helpers import assert_succeeded
from helpers import run_parallel

import keras_convgru as kc

pytestmark = pytest.mark.tensorflow_session

BACKENDS = ("tensorflow", "jax", "torch")
FRAMES = (2, 3, 5, 5, 2)  # batch, time, height, width, channels
ATOL = 1e-5
SUBPROCESS_TIMEOUT = 300


def build_model():
    # The weights are set from a seeded generator; skipping random
    # initialization saves JAX a compilation per weight shape.
    init = {"kernel_initializer": "zeros", "recurrent_initializer": "zeros"}
    inputs = keras.Input(FRAMES[1:])
    x = kc.ConvGRU2D(
        3, 3, padding="same", return_sequences=True, name="gru", **init
    )(inputs)
    x = kc.ConvLSTM2D(
        2, 3, padding="same", return_sequences=True, name="lstm", **init
    )(x)
    x = kc.ConvRNN(
        [
            kc.ConvGRU2DCell(2, 3, padding="same", reset_after=False, **init),
            kc.ConvLSTM2DCell(2, 3, padding="same", **init),
        ],
        name="stack",
    )(x)
    return keras.Model(inputs, x)


def frames():
    rng = np.random.default_rng(0)
    return rng.uniform(-1, 1, size=FRAMES).astype("float32")


def write_npz(path, weights, prediction):
    """Written under another name, then renamed: readers never see half."""
    partial = path + ".partial.npz"
    np.savez(partial, *weights, prediction=prediction)
    os.replace(partial, path)


def save(directory):
    """Build the model with seeded weights, save it, record a prediction."""
    backend = keras.backend.backend()
    model = build_model()
    rng = np.random.default_rng(1)
    weights = [
        rng.normal(scale=0.4, size=w.shape).astype("float32")
        for w in model.weights
    ]
    model.set_weights(weights)
    model.save(os.path.join(directory, f"{backend}.keras"))
    write_npz(
        os.path.join(directory, f"saved-on-{backend}.npz"),
        weights,
        model.predict(frames(), verbose=0),
    )


def load_all(directory, timeout):
    """Wait for every backend's file, load each, record what it holds."""
    backend = keras.backend.backend()
    deadline = time.monotonic() + timeout
    for source in BACKENDS:
        while not os.path.exists(
            os.path.join(directory, f"saved-on-{source}.npz")
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no model saved on {source}")
            time.sleep(0.2)
        loaded = keras.models.load_model(
            os.path.join(directory, f"{source}.keras")
        )
        write_npz(
            os.path.join(directory, f"{source}-loaded-on-{backend}.npz"),
            loaded.get_weights(),
            loaded.predict(frames(), verbose=0),
        )


def save_then_load_worker(directory, timeout):
    """Subprocess, one per other backend, all at once."""
    save(directory)
    load_all(directory, timeout)


def read(path):
    with np.load(path) as data:
        weights = [data[f"arr_{i}"] for i in range(len(data.files) - 1)]
        return weights, data["prediction"]


def reference_prediction(x, weights):
    """The same three layers, by the NumPy reference."""
    gru, lstm, stack_gru, stack_lstm = (
        weights[i : i + 3] for i in range(0, 12, 3)
    )
    x, _ = reference.conv_gru_reference(x, *gru, padding="same")
    x, _, _ = reference.conv_lstm_reference(x, *lstm, padding="same")
    x, _ = reference.conv_gru_reference(
        x, *stack_gru, padding="same", reset_after=False
    )
    _, h, _ = reference.conv_lstm_reference(x, *stack_lstm, padding="same")
    return h


def test_keras_files_load_and_predict_the_same_on_every_backend(tmp_path):
    # The session's own backend works in this process (it is a process
    # with that KERAS_BACKEND; in the TensorFlow session, TensorFlow is
    # already imported), the two others in a subprocess each.
    directory = str(tmp_path)
    here = keras.backend.backend()
    save(directory)
    results = run_parallel(
        [
            Job.call(
                f"{backend} subprocess",
                "test_portability",
                "save_then_load_worker",
                [directory, SUBPROCESS_TIMEOUT],
                {"KERAS_BACKEND": backend},
            )
            for backend in BACKENDS
            if backend != here
        ],
        SUBPROCESS_TIMEOUT,
    )
    assert_succeeded(results)
    load_all(directory, timeout=0)
    expected = None
    for source in BACKENDS:
        weights, prediction = read(tmp_path / f"saved-on-{source}.npz")
        assert len(weights) == 12
        if expected is None:
            expected = reference_prediction(frames(), weights)
        np.testing.assert_allclose(
            prediction, expected, atol=ATOL, err_msg=f"saved on {source}"
        )
        for loader in BACKENDS:
            what = f"saved on {source}, loaded on {loader}"
            loaded_weights, loaded_prediction = read(
                tmp_path / f"{source}-loaded-on-{loader}.npz"
            )
            assert len(loaded_weights) == len(weights), what
            for a, e in zip(loaded_weights, weights):
                np.testing.assert_array_equal(a, e, err_msg=what)
            np.testing.assert_allclose(
                loaded_prediction, prediction, atol=ATOL, err_msg=what
            )


# --- TensorFlow SavedModel ----------------------------------------------------


def test_saved_model_export_serves_any_batch_and_frame_size(tmp_path):
    import tensorflow as tf

    inputs = keras.Input((None, None, None, 1))
    x = kc.ConvGRU2D(3, 3, strides=2, padding="same", return_sequences=True)(
        inputs
    )
    outputs = kc.ConvLSTM2D(2, 3, padding="valid")(x)
    model = keras.Model(inputs, outputs)
    path = str(tmp_path / "saved_model")
    model.export(path, format="tf_saved_model", verbose=False)

    served = tf.saved_model.load(path)
    (spec,) = tf.nest.flatten(
        served.signatures["serving_default"].structured_input_signature
    )
    assert spec.shape.as_list() == [None, None, None, None, 1]
    rng = np.random.default_rng(4)
    # Two batch sizes, two frame sizes (and two lengths), one export.
    for shape in [(1, 4, 5, 5, 1), (3, 4, 5, 5, 1), (2, 6, 8, 6, 1)]:
        x = rng.uniform(-1, 1, size=shape).astype("float32")
        actual = served.serve(tf.constant(x)).numpy()
        expected = model.predict(x, verbose=0)
        assert actual.shape == expected.shape
        np.testing.assert_allclose(actual, expected, atol=ATOL, err_msg=shape)
