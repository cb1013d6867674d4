"""Portability: `.keras` files across backends, and TensorFlow SavedModel.

The cross-backend matrix saves one model, built from the Family table of
tests/helpers.py, on TensorFlow, JAX and PyTorch, then loads all three
files on each of them: every ordered pair of backends, the same one
included. The model: each family's layer in turn (ConvGRU2D, ConvLSTM2D,
TrajGRU2D, returning sequences), then for each family a `go_backwards`
ConvRNN over its cell (a variant: GRU `reset_after=False`, TrajGRU two
links) stacked with the next family's cell (the last with the first's),
each on the last layer's sequences. The pytest process does the work of
its own backend; each other backend runs in one subprocess (KERAS_BACKEND
set), both at once.
Each loaded model must have bit-identical weights and predict what the
saving backend predicted; each saving backend's outputs must match the
families' NumPy references (tests/reference.py, tests/reference_traj.py):
each layer's from the model's output before it, each stack's from the
last layer's, to the family's tolerance (the larger of the two in a
stack).

The SavedModel export serves any batch and frame size, for a model of
each family and for strided and "valid" ConvGRU and ConvLSTM layers.

These tests run once per CI run, in the TensorFlow-backend session (see
the `tensorflow_session` marker in conftest.py): the subprocesses cover
every backend whatever the session's backend is.
"""

import os
import time

import keras
import numpy as np
import pytest
from helpers import FAMILIES
from helpers import Job
from helpers import assert_succeeded
from helpers import family_of
from helpers import run_parallel

import keras_convgru as kc

pytestmark = pytest.mark.tensorflow_session

BACKENDS = ("tensorflow", "jax", "torch")
FRAMES = (2, 3, 5, 5, 2)  # batch, time, height, width, channels
ATOL = 1e-5  # the loaded file against the saving backend
SUBPROCESS_TIMEOUT = 300

# The weights are set from a seeded generator; skipping random
# initialization saves JAX a compilation per weight shape.
ZEROS = {"kernel_initializer": "zeros", "recurrent_initializer": "zeros"}
# The first cell of each family's stack: (cell options, reference options).
STACK_VARIANTS = {
    "gru": ({"reset_after": False}, {"reset_after": False}),
    "traj_gru": ({"links": 2}, {}),
}
NAMES = list(FAMILIES)


def _next(name):
    return NAMES[(NAMES.index(name) + 1) % len(NAMES)]


def build_model():
    """Outputs: each family's layer's sequences, then each stack's last
    output."""
    inputs = keras.Input(FRAMES[1:])
    x = inputs
    outputs = []
    for name, family in FAMILIES.items():
        x = family.layer(2, return_sequences=True, name=name, **ZEROS)(x)
        outputs.append(x)
    for name, family in FAMILIES.items():
        cell_options, _ = STACK_VARIANTS.get(name, ({}, {}))
        cells = [
            family.cell(2, **cell_options, **ZEROS),
            FAMILIES[_next(name)].cell(2, **ZEROS),
        ]
        stack = kc.ConvRNN(cells, go_backwards=True, name=f"stack_{name}")
        outputs.append(stack(x))
    return keras.Model(inputs, outputs)


def recurrent_cells(model):
    """The model's cells in the order of its weights."""
    cells = []
    for layer in model.layers[1:]:
        cells += list(getattr(layer.cell, "cells", [layer.cell]))
    return cells


def random_model_weights(model):
    """Each cell's family's random weights, in the model's order."""
    rng = np.random.default_rng(1)
    weights = []
    for cell in recurrent_cells(model):
        weights += family_of(cell).weights(cell, rng, 0.4)
    assert [w.shape for w in weights] == [tuple(w.shape) for w in model.weights]
    return weights


def frames():
    rng = np.random.default_rng(0)
    return rng.uniform(-1, 1, size=FRAMES).astype("float32")


def write_npz(path, weights, predictions):
    """Written under another name, then renamed: readers never see half."""
    partial = path + ".partial.npz"
    np.savez(
        partial,
        *weights,
        **{f"prediction_{i}": p for i, p in enumerate(predictions)},
    )
    os.replace(partial, path)


def save(directory):
    """Build the model with seeded weights, save it, record a prediction."""
    backend = keras.backend.backend()
    model = build_model()
    weights = random_model_weights(model)
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
        weights = sorted(k for k in data.files if k.startswith("arr_"))
        weights = [data[f"arr_{i}"] for i in range(len(weights))]
        count = len(data.files) - len(weights)
        return weights, [data[f"prediction_{i}"] for i in range(count)]


def assert_matches_references(x, weights, predictions, what):
    """Each output against its families' references, from the model's
    own output before it; see the docstring."""
    model = build_model()
    cells = recurrent_cells(model)
    counts = [len(cell.weights) for cell in cells]
    assert len(weights) == sum(counts)
    starts = np.cumsum([0, *counts])
    by_cell = [weights[a:b] for a, b in zip(starts[:-1], starts[1:])]
    assert len(predictions) == 2 * len(FAMILIES)
    inputs = x
    for i, name in enumerate(FAMILIES):
        family = FAMILIES[name]
        expected, _ = family.reference(inputs, by_cell[i])
        np.testing.assert_allclose(
            predictions[i],
            expected,
            atol=family.reference_atol,
            err_msg=f"{what}: layer {name}",
        )
        inputs = predictions[i]
    for i, name in enumerate(FAMILIES):
        first, second = FAMILIES[name], FAMILIES[_next(name)]
        _, reference_options = STACK_VARIANTS.get(name, ({}, {}))
        cell = len(FAMILIES) + 2 * i
        # go_backwards: the stack runs the reversed sequence forwards.
        sequence, _ = first.reference(
            inputs[:, ::-1], by_cell[cell], **reference_options
        )
        _, expected = second.reference(sequence, by_cell[cell + 1])
        np.testing.assert_allclose(
            predictions[len(FAMILIES) + i],
            expected,
            atol=max(first.reference_atol, second.reference_atol),
            err_msg=f"{what}: stack {name}",
        )


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
    expected_weights = random_model_weights(build_model())
    for source in BACKENDS:
        weights, prediction = read(tmp_path / f"saved-on-{source}.npz")
        assert len(weights) == len(expected_weights)
        for a, e in zip(weights, expected_weights):
            np.testing.assert_array_equal(a, e, err_msg=source)
        assert_matches_references(
            frames(), weights, prediction, f"saved on {source}"
        )
        for loader in BACKENDS:
            what = f"saved on {source}, loaded on {loader}"
            loaded_weights, loaded_prediction = read(
                tmp_path / f"{source}-loaded-on-{loader}.npz"
            )
            assert len(loaded_weights) == len(weights), what
            for a, e in zip(loaded_weights, weights):
                np.testing.assert_array_equal(a, e, err_msg=what)
            assert len(loaded_prediction) == len(prediction), what
            for a, e in zip(loaded_prediction, prediction):
                np.testing.assert_allclose(a, e, atol=ATOL, err_msg=what)


# --- TensorFlow SavedModel ----------------------------------------------------


def _assert_serves(path, model, shapes, channels):
    """The export's signature has dynamic batch, time and frame sizes, and
    it serves what `predict` computes at each shape."""
    import tensorflow as tf

    served = tf.saved_model.load(path)
    (spec,) = tf.nest.flatten(
        served.signatures["serving_default"].structured_input_signature
    )
    assert spec.shape.as_list() == [None, None, None, None, channels]
    rng = np.random.default_rng(4)
    for shape in shapes:
        x = rng.uniform(-1, 1, size=shape).astype("float32")
        actual = served.serve(tf.constant(x)).numpy()
        expected = model.predict(x, verbose=0)
        assert actual.shape == expected.shape
        np.testing.assert_allclose(actual, expected, atol=ATOL, err_msg=shape)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_saved_model_export_of_each_family_serves_any_batch_and_frame_size(
    family, tmp_path
):
    inputs = keras.Input((None, None, None, 2))
    first = FAMILIES[family].layer(3, return_sequences=True)
    second = FAMILIES[family].layer(2)
    model = keras.Model(inputs, second(first(inputs)))
    rng = np.random.default_rng(22)
    for layer in (first, second):
        FAMILIES[family].randomize(layer, rng)
    path = str(tmp_path / "saved_model")
    model.export(path, format="tf_saved_model", verbose=False)
    _assert_serves(path, model, [(1, 3, 6, 5, 2), (3, 2, 8, 4, 2)], 2)


def test_saved_model_export_of_strided_and_valid_layers_serves_any_shape(
    tmp_path,
):
    inputs = keras.Input((None, None, None, 1))
    x = kc.ConvGRU2D(3, 3, strides=2, padding="same", return_sequences=True)(
        inputs
    )
    outputs = kc.ConvLSTM2D(2, 3, padding="valid")(x)
    model = keras.Model(inputs, outputs)
    path = str(tmp_path / "saved_model")
    model.export(path, format="tf_saved_model", verbose=False)
    # Two batch sizes, two frame sizes (and two lengths), one export.
    shapes = [(1, 4, 5, 5, 1), (3, 4, 5, 5, 1), (2, 6, 8, 6, 1)]
    _assert_serves(path, model, shapes, 1)
