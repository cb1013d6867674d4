"""`.keras` files saved by an earlier commit load and predict the same.

A regression guard for changes inside the package (refactors in
particular): a model saved by users with an earlier version of
keras_convgru must load with the current code, rebuild the same layer
(class, config, weights' paths and shapes) and give the same outputs.
Every public layer class has a file (ConvGRU1D/2D/3D, ConvLSTM1D/2D/3D,
TrajGRU2D, and ConvRNN over a single cell and over a stack of a
ConvGRU2DCell, a ConvLSTM2DCell and a TrajGRU2DCell), and so do the
options that change the weights or the computation: ConvGRU2D
`reset_after=False` and `normalization="group"` (`norm_groups=2`),
ConvLSTM2D `peepholes="channel"` with `normalization="layer"`, and
`peepholes="full"`, `channels_first` (ConvGRU3D, TrajGRU2D),
`return_sequences`, `return_state` and `go_backwards`.

How the files were made: `tests/data/make_saved_files.py` (its docstring
says how to run it), on the TensorFlow backend, with the package of
commit 95cf411ae186ccb2270f7b570a7209ad54b54939 (main before the
refactor of issue 19), at the oldest versions we support: Keras 3.8.0,
TensorFlow 2.18.1 (CPU, oneDNN on), NumPy 2.0.2 and Python 3.11.7 (also
recorded in `tests/data/manifest.json`, under "made_with"). Keras reads
files of its own version and older ones, not newer ones (3.15 writes
initializer keys that 3.8 rejects), so files saved at the oldest versions
are the ones every supported Keras must load. Each model is tiny (2-4
filters, frames of at most 6x6, kernel 3, at most 4 steps) with every
weight drawn from a seeded NumPy generator (scale 0.3, so no bias is
zero); beside each `NAME.keras`, `NAME.npz` holds the seeded input `x`
(batch 2) and the outputs `y0`, `y1`, ... the model gave on it before it
was saved. The manifest lists, per file, the layer's class and the
arguments it was built with, and its weights' names and shapes in
`model.weights` order with a fingerprint of their values (float64 sum and
sum of squares): a weight loaded into the wrong variable fails it.

The test runs on the suite's backend: the files were saved on TensorFlow,
and loading them on JAX and PyTorch is part of what it checks. The
tolerance, `rtol=atol=1e-5`, holds across CPUs, both of TensorFlow's CPU
paths (oneDNN on and off) and the three backends (float32 results differ
in the last bits between them), and is far tighter than what a wrong
gate, activation, weight order or state order changes.

Do not remake the files to make this test pass: a difference here means
the change is visible to users' saved models.
"""

import functools
import json
import pathlib
import zipfile

import keras
import numpy as np
import pytest

import keras_convgru as kc

DATA = pathlib.Path(__file__).resolve().parent / "data"
MANIFEST = json.loads((DATA / "manifest.json").read_text())
CASES = MANIFEST["cases"]
NAMES = sorted(CASES)

RTOL = 1e-5
ATOL = 1e-5

PUBLIC_LAYERS = (
    "ConvGRU1D",
    "ConvGRU2D",
    "ConvGRU3D",
    "ConvLSTM1D",
    "ConvLSTM2D",
    "ConvLSTM3D",
    "TrajGRU2D",
    "ConvRNN",
)


@functools.cache
def load(name):
    """The model in `NAME.keras`, loaded once per session."""
    return keras.saving.load_model(DATA / f"{name}.keras")


def saved_layer_config(name):
    """The config of the layer named "layer" in the file, as saved."""
    with zipfile.ZipFile(DATA / f"{name}.keras") as archive:
        model_config = json.loads(archive.read("config.json"))
    for layer in model_config["config"]["layers"]:
        if layer["config"].get("name") == "layer":
            return layer
    raise AssertionError(f"{name}.keras has no layer named 'layer'")


def without_object_ids(value):
    """`value` without Keras's `shared_object_id` bookkeeping entries."""
    if isinstance(value, dict):
        return {
            key: without_object_ids(item)
            for key, item in value.items()
            if key != "shared_object_id"
        }
    if isinstance(value, (list, tuple)):
        return [without_object_ids(item) for item in value]
    return value


def assert_contains(actual, expected, where):
    """Every entry of `expected` is in `actual`, recursively, and equal."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: {actual!r}"
        for key, item in expected.items():
            assert key in actual, f"{where}: no {key!r} in {sorted(actual)}"
            assert_contains(actual[key], item, f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{where}: {actual!r}"
        assert len(actual) == len(expected), f"{where}: {actual!r}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_contains(a, e, f"{where}[{i}]")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def assert_arguments(config, arguments, rank, where):
    """The config has each argument as given (an int size per axis)."""
    for key, value in arguments.items():
        got = config[key]
        if isinstance(got, (list, tuple)) and isinstance(value, int):
            value = [value] * rank
        if isinstance(got, tuple):
            got = list(got)
        assert got == value, f"{where}.{key}: {got!r} != {value!r}"


def test_the_files_are_those_of_the_manifest():
    on_disk = {p.stem for p in DATA.glob("*.keras")}
    assert on_disk == set(CASES)
    assert {p.stem for p in DATA.glob("*.npz")} == set(CASES)
    assert {case["layer_class"] for case in CASES.values()} >= set(
        PUBLIC_LAYERS
    )


@pytest.mark.parametrize("name", NAMES)
def test_loads_the_same_layer(name):
    case = CASES[name]
    model = load(name)
    layer = model.get_layer("layer")
    layer_class = getattr(kc, case["layer_class"])
    assert type(layer) is layer_class
    assert (
        keras.saving.get_registered_name(layer_class)
        == f"keras_convgru>{case['layer_class']}"
    )
    arguments = dict(case["arguments"])
    cells = arguments.pop("cell", None)
    config = layer.get_config()
    rank = len(case["input_shape"]) - 2
    assert_arguments(config, arguments, rank, name)
    if cells is not None:
        inner = layer.cell.cells if len(cells) > 1 else [layer.cell]
        assert len(inner) == len(cells)
        for i, (cell, (cell_class, cell_arguments)) in enumerate(
            zip(inner, cells)
        ):
            assert type(cell) is getattr(kc, cell_class)
            assert cell.name == f"cell_{i}"
            assert_arguments(
                cell.get_config(), cell_arguments, rank, f"{name}.cell_{i}"
            )
    # Everything the file saved about the layer (its config, the cells'
    # configs, registered names) comes back; entries added since may not.
    saved = without_object_ids(saved_layer_config(name))
    now = without_object_ids(
        json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    )
    for key in ("class_name", "registered_name", "config"):
        assert_contains(now[key], saved[key], f"{name}:{key}")


@pytest.mark.parametrize("name", NAMES)
def test_loads_the_same_weights(name):
    model = load(name)
    expected = CASES[name]["weights"]
    # Names, not paths: a variable's path is the name scope it was built
    # in, which differs between a built model and a loaded one.
    assert [(w.name, list(w.shape)) for w in model.weights] == [
        (weight_name, shape) for weight_name, shape, _, _ in expected
    ]
    for i, (weight, (weight_name, _, total, total_sq)) in enumerate(
        zip(model.weights, expected)
    ):
        value = np.asarray(weight).astype("float64")
        np.testing.assert_allclose(
            [value.sum(), np.square(value).sum()],
            [total, total_sq],
            rtol=1e-9,
            atol=1e-9,
            err_msg=f"weight {i} ({weight_name})",
        )


@pytest.mark.parametrize("name", NAMES)
def test_predicts_the_saved_outputs(name):
    case = CASES[name]
    model = load(name)
    data = np.load(DATA / f"{name}.npz")
    x = data["x"]
    assert list(x.shape[1:]) == case["input_shape"]
    y = model.predict(x, batch_size=len(x), verbose=0)
    ys = list(y) if isinstance(y, (list, tuple)) else [y]
    assert [list(np.shape(v)) for v in ys] == case["output_shapes"]
    for i, v in enumerate(ys):
        expected = data[f"y{i}"]
        assert expected.dtype == np.float32
        np.testing.assert_allclose(
            np.asarray(v), expected, rtol=RTOL, atol=ATOL, err_msg=f"y{i}"
        )
