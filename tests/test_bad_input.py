"""Bad input, nothing lost.

Inputs: each bad input either gives a clear ValueError that names the
problem and the value, raised before any convolution runs, or, where Keras
defines a result (checked against keras.layers.ConvLSTM2D and the NumPy
reference), that result. Covered elsewhere and not repeated here: frames
smaller than a `valid` kernel and a wrong channel count after build
(tests/test_errors.py).

Files: what happens to a model and to the file on disk when loading or
saving a `.keras` file fails, as Keras 3 does it, and the keras_convgru
guarantee on top: a failed load never leaves one of our layers half
loaded.
"""

import json
import os
import zipfile

import keras
import numpy as np
import pytest
import reference
from keras import ops

import keras_convgru as kc

PACKAGE_DIR = os.path.dirname(os.path.abspath(kc.__file__))
KERAS_RNN = os.path.join("keras", "src", "layers", "rnn", "rnn.py")


def raised_in(excinfo, *places):
    """The innermost frame of the traceback is in one of `places`."""
    origin = os.path.abspath(str(excinfo.traceback[-1].path))
    return any(
        origin.startswith(p) if os.path.isabs(p) else origin.endswith(p)
        for p in places
    )


def zeros(*shape, dtype="float32"):
    return np.zeros(shape, dtype)


def gru(**kwargs):
    return kc.ConvGRU2D(2, 3, padding="same", **kwargs)


def lstm(**kwargs):
    return kc.ConvLSTM2D(2, 3, padding="same", **kwargs)


def stacked(**kwargs):
    cells = [
        kc.ConvGRU2DCell(2, 3, padding="same"),
        kc.ConvLSTM2DCell(2, 3, padding="same"),
    ]
    return kc.ConvRNN(cells, **kwargs)


MAKERS = {"ConvGRU2D": gru, "ConvLSTM2D": lstm, "stacked ConvRNN": stacked}


@pytest.fixture(params=list(MAKERS), ids=list(MAKERS))
def make(request):
    return MAKERS[request.param]


# --- inputs -------------------------------------------------------------------


def test_zero_time_steps_is_a_value_error_naming_the_shape(make):
    # keras.layers.GRU and ConvLSTM2D fail inside the backend here
    # (StridedSlice / IndexError); there is no Keras result to follow.
    match = r"at least one time step.*\(2, 0, 5, 5, 1\)"
    with pytest.raises(ValueError, match=match) as excinfo:
        make()(zeros(2, 0, 5, 5, 1))
    assert raised_in(excinfo, PACKAGE_DIR)
    with pytest.raises(ValueError, match=r"at least one time step"):
        make()(keras.Input((0, 5, 5, 1)))


def test_zero_batch_gives_empty_outputs_shaped_as_keras_conv_lstm2d(make):
    kwargs = {"return_sequences": True, "return_state": True}
    x = zeros(0, 4, 5, 5, 1)
    sequence, h, _ = keras.layers.ConvLSTM2D(2, 3, padding="same", **kwargs)(x)
    # [sequence, state, ...]: GRU one state, LSTM two, the stack three.
    outputs = keras.tree.flatten(make(**kwargs)(x))
    assert tuple(outputs[0].shape) == tuple(sequence.shape) == (0, 4, 5, 5, 2)
    for state in outputs[1:]:
        assert tuple(state.shape) == tuple(h.shape) == (0, 5, 5, 2)
    for tensor in outputs:
        assert keras.backend.standardize_dtype(tensor.dtype) == "float32"


EVERY_LAYER = [
    (kc.ConvGRU1D, 1),
    (kc.ConvGRU2D, 2),
    (kc.ConvGRU3D, 3),
    (kc.ConvLSTM1D, 1),
    (kc.ConvLSTM2D, 2),
    (kc.ConvLSTM3D, 3),
]


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize(
    "layer_class, rank", EVERY_LAYER, ids=[c.__name__ for c, _ in EVERY_LAYER]
)
def test_every_layer_gives_empty_outputs_for_an_empty_batch(
    layer_class, rank, padding
):
    # TensorFlow's oneDNN convolution of an empty batch returns the input's
    # channel count (and Keras's own ConvLSTM1D/3D fail there); the layers
    # must not depend on it. 5-pixel frames, 3x3 kernel: 5 ('same') or 3
    # ('valid') pixels per axis, 3 filters.
    kwargs = {"return_sequences": True, "return_state": True}
    x = zeros(0, 4, *(5,) * rank, 2)
    side = 5 if padding == "same" else 3
    state_shape = (0, *(side,) * rank, 3)
    layer = layer_class(3, 3, padding=padding, **kwargs)
    outputs = keras.tree.flatten(layer(x))
    assert tuple(outputs[0].shape) == (0, 4, *state_shape[1:])
    assert len(outputs) == (2 if "GRU" in layer_class.__name__ else 3)
    for state in outputs[1:]:
        assert tuple(state.shape) == state_shape


@pytest.mark.parametrize("dtype", ["int32", "float64", "float16"])
def test_initial_state_of_another_dtype_is_cast_as_keras_conv_lstm2d_does(
    dtype,
):
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, size=(2, 4, 5, 5, 1)).astype("float32")
    states = [
        rng.integers(-1, 2, size=(2, 5, 5, 2)).astype(dtype) for _ in "hc"
    ]
    ours = lstm(return_state=True)
    theirs = keras.layers.ConvLSTM2D(2, 3, padding="same", return_state=True)
    ours.build(x.shape)
    theirs.build(x.shape)
    ours.set_weights(theirs.get_weights())
    actual = ours(x, initial_state=states)
    expected = theirs(x, initial_state=states)
    for a, e in zip(actual, expected):
        assert keras.backend.standardize_dtype(a.dtype) == "float32"
        np.testing.assert_allclose(
            ops.convert_to_numpy(a), ops.convert_to_numpy(e), atol=1e-5
        )


@pytest.mark.parametrize("dtype", ["int32", "float64", "float16"])
def test_gru_initial_state_of_another_dtype_is_cast_to_the_compute_dtype(
    dtype,
):
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, size=(2, 4, 5, 5, 1)).astype("float32")
    state = rng.integers(-1, 2, size=(2, 5, 5, 2)).astype(dtype)
    layer = gru(return_sequences=True, return_state=True)
    layer.build(x.shape)
    weights = [
        rng.normal(scale=0.4, size=w.shape).astype("float32")
        for w in layer.weights
    ]
    layer.set_weights(weights)
    actual = layer(x, initial_state=[state])
    expected = reference.conv_gru_reference(
        x, *weights, padding="same", h0=state.astype("float64")
    )
    for a, e in zip(actual, expected):
        assert keras.backend.standardize_dtype(a.dtype) == "float32"
        np.testing.assert_allclose(ops.convert_to_numpy(a), e, atol=1e-5)


def stateful_model(make, batch_shape):
    inputs = keras.Input(batch_shape=batch_shape)
    model = keras.Model(inputs, make(stateful=True)(inputs))
    model(zeros(*batch_shape))
    return model


def test_stateful_layer_with_another_batch_size_names_both_sizes(make):
    # keras.layers.RNN's own check, at the layer's entry, as for
    # keras.layers.GRU and ConvLSTM2D.
    match = r"(?s)stateful.*Expected batch size: 2.*Received batch size: 3"
    model = stateful_model(make, (2, 4, 5, 5, 1))
    with pytest.raises(ValueError, match=match) as excinfo:
        model(zeros(3, 4, 5, 5, 1))
    assert raised_in(excinfo, PACKAGE_DIR, KERAS_RNN)
    layer = make(stateful=True)
    layer(zeros(2, 4, 5, 5, 1))
    with pytest.raises(ValueError, match=match):
        layer(zeros(3, 4, 5, 5, 1))


def test_stateful_layer_on_frames_of_another_size_names_both_shapes(make):
    layer = make(stateful=True)
    layer(zeros(2, 4, 5, 5, 1))
    match = (
        r"stateful=True.*states of shape \(2, 5, 5, 2\).*"
        r"\(2, 6, 6, 2\).*\(2, 4, 6, 6, 1\)"
    )
    with pytest.raises(ValueError, match=match) as excinfo:
        layer(zeros(2, 4, 6, 6, 1))
    assert raised_in(excinfo, PACKAGE_DIR)
    # Frames of the size it was built for still continue the states.
    layer(zeros(2, 4, 5, 5, 1))


# --- loading files ------------------------------------------------------------


def two_layer_model(gru_kwargs=None):
    inputs = keras.Input((3, 4, 4, 1))
    x = gru(return_sequences=True, name="gru", **(gru_kwargs or {}))(inputs)
    x = lstm(name="lstm")(x)
    return keras.Model(inputs, x)


def saved_model_file(tmp_path, model=None):
    model = model or two_layer_model()
    path = tmp_path / "model.keras"
    model.save(path)
    return path


def weights_of(model):
    return {w.path: ops.convert_to_numpy(w).copy() for w in model.weights}


def assert_weights_equal(model, expected, paths=None):
    actual = weights_of(model)
    for path in paths or expected:
        np.testing.assert_array_equal(actual[path], expected[path], path)


def rewrite_config(path, target, edit):
    """Copy of the `.keras` file `path` with its config.json edited."""
    with zipfile.ZipFile(path) as source:
        config = json.loads(source.read("config.json"))
        edit(config)
        with zipfile.ZipFile(target, "w") as copy:
            for name in source.namelist():
                data = source.read(name)
                if name == "config.json":
                    data = json.dumps(config)
                copy.writestr(name, data)
    return target


def test_load_model_with_mismatched_weight_shapes_names_the_layer(tmp_path):
    path = saved_model_file(tmp_path)

    def larger_gru_kernel(config):
        for layer in config["config"]["layers"]:
            if layer["config"]["name"] == "gru":
                layer["config"]["kernel_size"] = [5, 5]

    edited = rewrite_config(path, tmp_path / "edited.keras", larger_gru_kernel)
    with pytest.raises(ValueError, match=r"could not be loaded.*ConvGRU2DCell"):
        keras.models.load_model(edited)


def test_truncated_file_fails_to_load_and_leaves_the_model_unchanged(
    tmp_path,
):
    path = saved_model_file(tmp_path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(data[: len(data) // 2])
    # Keras's message says "File not found" for any unreadable archive.
    with pytest.raises(ValueError, match=r"accessible `.keras` zip file"):
        keras.models.load_model(truncated)
    model = two_layer_model()
    before = weights_of(model)
    with pytest.raises(zipfile.BadZipFile):
        model.load_weights(truncated)
    assert_weights_equal(model, before)


def test_failed_load_weights_leaves_the_mismatched_layer_unchanged(tmp_path):
    # Same kernel shapes, another bias shape: (2, 6) saved, (6,) here.
    path = saved_model_file(tmp_path)
    model = two_layer_model({"reset_after": False})
    before = weights_of(model)
    with pytest.raises(ValueError, match=r"could not be loaded"):
        model.load_weights(path)
    # Keras assigns weight by weight; without the keras_convgru check the
    # GRU's kernel and recurrent kernel would be the file's by now.
    gru_paths = [p for p in before if p.startswith("gru/")]
    assert len(gru_paths) == 3
    assert_weights_equal(model, before, gru_paths)


def test_failed_load_weights_still_loads_the_layers_that_fit(tmp_path):
    # What Keras 3 does: it loads every layer that fits, then raises.
    saved = two_layer_model()
    path = saved_model_file(tmp_path, saved)
    model = two_layer_model({"reset_after": False})
    with pytest.raises(ValueError):
        model.load_weights(path)
    lstm_paths = [p for p in weights_of(model) if p.startswith("lstm/")]
    assert_weights_equal(model, weights_of(saved), lstm_paths)


def test_snapshot_and_restore_keeps_the_whole_model_on_a_failed_load(
    tmp_path,
):
    # The recipe of docs/scaling.md for an all-or-nothing load.
    path = saved_model_file(tmp_path)
    model = two_layer_model({"reset_after": False})
    before = weights_of(model)
    snapshot = model.get_weights()
    with pytest.raises(ValueError):
        try:
            model.load_weights(path)
        except ValueError:
            model.set_weights(snapshot)
            raise
    assert_weights_equal(model, before)


# --- saving files -------------------------------------------------------------


class FailingLayer(keras.layers.Layer):
    """An identity layer whose config or weights cannot be saved."""

    def __init__(self, fails_in, **kwargs):
        super().__init__(**kwargs)
        self.fails_in = fails_in

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(), initializer="ones")

    def call(self, x):
        return x * self.scale

    def get_config(self):
        if self.fails_in == "get_config":
            raise RuntimeError("get_config failed")
        return {**super().get_config(), "fails_in": self.fails_in}

    def save_own_variables(self, store):
        if self.fails_in == "save_own_variables":
            raise RuntimeError("save_own_variables failed")
        super().save_own_variables(store)


def model_failing_in(fails_in):
    inputs = keras.Input((3, 4, 4, 1))
    x = gru(return_sequences=True)(inputs)
    return keras.Model(inputs, FailingLayer(fails_in)(x))


def test_keras_save_failing_in_get_config_leaves_an_empty_file(tmp_path):
    # Keras 3 opens the target for writing before it serializes the
    # config: a good file already there is lost.
    path = saved_model_file(tmp_path)
    assert path.stat().st_size > 0
    with pytest.raises(RuntimeError, match="get_config failed"):
        model_failing_in("get_config").save(path)
    assert path.stat().st_size == 0
    with pytest.raises(ValueError):
        keras.models.load_model(path)


def test_keras_save_failing_in_a_weight_leaves_a_file_without_weights(
    tmp_path,
):
    path = saved_model_file(tmp_path)
    with pytest.raises(RuntimeError, match="save_own_variables failed"):
        model_failing_in("save_own_variables").save(path)
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["config.json", "metadata.json"]
    with pytest.raises(ValueError, match=r"model.weights.h5"):
        keras.models.load_model(
            path, custom_objects={"FailingLayer": FailingLayer}
        )


def save_atomically(model, path):
    """The recipe of docs/scaling.md: write a temporary file next to the
    target, then rename it over the target (atomic on POSIX and Windows)."""
    path = os.fspath(path)
    temporary = path[: -len(".keras")] + ".partial.keras"
    try:
        model.save(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


@pytest.mark.parametrize("fails_in", ["get_config", "save_own_variables"])
def test_save_through_a_temporary_file_keeps_the_last_good_file(
    tmp_path, fails_in
):
    good = two_layer_model()
    path = tmp_path / "model.keras"
    save_atomically(good, path)
    with pytest.raises(RuntimeError, match="failed"):
        save_atomically(model_failing_in(fails_in), path)
    assert sorted(os.listdir(tmp_path)) == ["model.keras"]
    loaded = keras.models.load_model(path)
    assert_weights_equal(loaded, weights_of(good))
