"""Configs, registration and `.keras` files.

Every public class rebuilds from its config with every argument intact, is
registered under the `keras_convgru` package, and whole models (functional
and Sequential) save to `.keras` and load back with the same weights and
predictions.
"""

import copy
import json

import keras
import numpy as np
import pytest
from helpers import FAMILIES
from helpers import GRU_CELLS
from helpers import GRU_LAYERS
from helpers import LSTM_CELLS
from helpers import LSTM_LAYERS
from helpers import randomize_weights

import keras_convgru as kc

PUBLIC_CLASSES = [getattr(kc, name) for name in kc.__all__ if name[0] != "_"]
CUSTOM_OBJECTS = {cls.__name__: cls for cls in PUBLIC_CLASSES}


# Arguments whose config entry is a serialized Keras object.
OBJECT_ARGUMENTS = (
    "kernel_initializer",
    "recurrent_initializer",
    "bias_initializer",
    "kernel_regularizer",
    "recurrent_regularizer",
    "bias_regularizer",
    "kernel_constraint",
    "recurrent_constraint",
    "bias_constraint",
    "peephole_initializer",
    "peephole_regularizer",
    "peephole_constraint",
    "activity_regularizer",
    "flow_kernel_initializer",
    "flow_kernel_regularizer",
    "flow_kernel_constraint",
)


def non_default_cell_arguments(rank, family, spacing):
    """Every cell argument set to something other than its default.

    `strides > 1` and `dilation_rate > 1` exclude each other, so `spacing`
    picks which one is non-default.
    """
    arguments = {
        "filters": 3,
        "kernel_size": (3, 2, 2)[:rank],
        "padding": "same",
        "data_format": "channels_first",
        "activation": "relu",
        "recurrent_activation": "hard_sigmoid",
        "use_bias": False,
        "kernel_initializer": keras.initializers.HeNormal(seed=1),
        "recurrent_initializer": keras.initializers.GlorotNormal(seed=2),
        "bias_initializer": keras.initializers.Constant(0.5),
        "kernel_regularizer": keras.regularizers.L2(0.01),
        "recurrent_regularizer": keras.regularizers.L2(0.01),
        "bias_regularizer": keras.regularizers.L2(0.01),
        "kernel_constraint": keras.constraints.NonNeg(),
        "recurrent_constraint": keras.constraints.NonNeg(),
        "bias_constraint": keras.constraints.NonNeg(),
        "dropout": 0.25,
        "recurrent_dropout": 0.125,
        "seed": 7,
    }
    if spacing == "strided":
        arguments["strides"] = (2, 1, 3)[:rank]
    else:
        arguments["dilation_rate"] = (2, 1, 3)[:rank]
    arguments["normalization"] = "group"
    arguments["norm_groups"] = 3
    arguments["norm_epsilon"] = 0.01
    if family == "gru":
        arguments["reset_after"] = False
    else:
        arguments["unit_forget_bias"] = False
        arguments["peepholes"] = "full"
        arguments["peephole_initializer"] = keras.initializers.Constant(0.1)
        arguments["peephole_regularizer"] = keras.regularizers.L1(0.01)
        arguments["peephole_constraint"] = keras.constraints.NonNeg()
    return arguments


NON_DEFAULT_LAYER_ARGUMENTS = {
    "return_sequences": True,
    "return_state": True,
    "go_backwards": True,
    # Only round-tripped here: a stateful layer also needs a fixed batch.
    "stateful": True,
    "unroll": True,
    "activity_regularizer": keras.regularizers.L1(0.02),
    "name": "renamed_layer",
}


def assert_arguments_survived(config, arguments):
    for name, value in arguments.items():
        if name in OBJECT_ARGUMENTS:
            rebuilt = keras.saving.deserialize_keras_object(config[name])
            assert type(rebuilt) is type(value), name
            assert rebuilt.get_config() == value.get_config(), name
        else:
            assert config[name] == value, name


def assert_config_round_trips(cls, obj, arguments):
    config = obj.get_config()
    assert_arguments_survived(config, arguments)
    # `from_config` of keras.layers.RNN pops "cell": give it a copy.
    rebuilt = cls.from_config(copy.deepcopy(config))
    assert type(rebuilt) is cls
    assert rebuilt.get_config() == config
    return rebuilt


CELL_CASES = [
    pytest.param(cls, rank, family, spacing, id=f"{cls.__name__}-{spacing}")
    for family, cells in (("gru", GRU_CELLS), ("lstm", LSTM_CELLS))
    for rank, cls in cells.items()
    for spacing in ("strided", "dilated")
]


@pytest.mark.parametrize("cls,rank,family,spacing", CELL_CASES)
def test_fixed_rank_cell_config_round_trips_every_argument(
    cls, rank, family, spacing
):
    arguments = non_default_cell_arguments(rank, family, spacing)
    cell = cls(**arguments, name="renamed_cell")
    rebuilt = assert_config_round_trips(cls, cell, arguments)
    assert rebuilt.name == "renamed_cell"
    # The rank is the class's, not an argument.
    assert "rank" not in cell.get_config()
    assert rebuilt.rank == rank


@pytest.mark.parametrize(
    "cls,family", [(kc.ConvGRUCell, "gru"), (kc.ConvLSTMCell, "lstm")]
)
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_rank_generic_cell_config_keeps_rank_and_round_trips(cls, family, rank):
    # Keras's own rank-generic ConvLSTM cell leaves `rank` out of its config,
    # so it cannot be rebuilt from it; ours keeps it.
    arguments = {
        "rank": rank,
        **non_default_cell_arguments(rank, family, "dilated"),
    }
    cell = cls(**arguments)
    assert cell.get_config()["rank"] == rank
    rebuilt = assert_config_round_trips(cls, cell, arguments)
    assert rebuilt.rank == rank
    assert rebuilt.kernel_size == (3, 2, 2)[:rank]


LAYER_CASES = [
    pytest.param(cls, rank, family, spacing, id=f"{cls.__name__}-{spacing}")
    for family, layers in (("gru", GRU_LAYERS), ("lstm", LSTM_LAYERS))
    for rank, cls in layers.items()
    for spacing in ("strided", "dilated")
]


@pytest.mark.parametrize("cls,rank,family,spacing", LAYER_CASES)
def test_layer_config_round_trips_every_argument(cls, rank, family, spacing):
    cell_arguments = non_default_cell_arguments(rank, family, spacing)
    arguments = {**cell_arguments, **NON_DEFAULT_LAYER_ARGUMENTS}
    layer = cls(**arguments)
    rebuilt = assert_config_round_trips(cls, layer, arguments)
    assert type(rebuilt.cell) is cls.cell_class
    assert_arguments_survived(rebuilt.cell.get_config(), cell_arguments)
    assert rebuilt.cell.rank == rank


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_layer_config_round_trips_and_shows_the_cell_arguments(family):
    cell_arguments = FAMILIES[family].config_arguments()
    arguments = {**cell_arguments, **NON_DEFAULT_LAYER_ARGUMENTS}
    cls = FAMILIES[family].layers[2]
    layer = cls(**arguments)
    config = layer.get_config()
    # The cell's arguments are the layer's; no nested cell.
    assert "cell" not in config
    rebuilt = assert_config_round_trips(cls, layer, arguments)
    assert type(rebuilt.cell) is FAMILIES[family].cells[2]
    assert_arguments_survived(rebuilt.cell.get_config(), cell_arguments)
    # The layer shows each cell argument, read-only.
    for name in cell_arguments:
        assert getattr(layer, name) == getattr(layer.cell, name), name
        with pytest.raises(AttributeError):
            setattr(layer, name, 4)
    cell = layer.cell
    cell_clone = type(cell).from_config(cell.get_config())
    assert cell_clone.get_config() == cell.get_config()
    # Through Keras's own serialization, by registered name.
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert type(restored) is cls
    assert restored.get_config() == config


def test_layer_config_survives_json():
    arguments = {
        **non_default_cell_arguments(2, "gru", "strided"),
        **NON_DEFAULT_LAYER_ARGUMENTS,
    }
    layer = kc.ConvGRU2D(**arguments)
    config = layer.get_config()
    rebuilt = kc.ConvGRU2D.from_config(json.loads(json.dumps(config)))
    assert rebuilt.get_config() == config


@pytest.mark.parametrize("family", ["gru", "lstm"])
def test_conv_rnn_with_one_cell_config_round_trips_every_argument(family):
    cell_class = GRU_CELLS[2] if family == "gru" else LSTM_CELLS[2]
    cell_arguments = non_default_cell_arguments(2, family, "strided")
    rnn_arguments = {
        **NON_DEFAULT_LAYER_ARGUMENTS,
        "zero_output_for_mask": True,
    }
    layer = kc.ConvRNN(cell_class(**cell_arguments), **rnn_arguments)
    rebuilt = assert_config_round_trips(kc.ConvRNN, layer, rnn_arguments)
    assert type(rebuilt.cell) is cell_class
    assert_arguments_survived(rebuilt.cell.get_config(), cell_arguments)
    assert rebuilt.rank == 2


def test_conv_rnn_with_stacked_cells_config_round_trips_every_argument():
    gru_arguments = non_default_cell_arguments(3, "gru", "dilated")
    lstm_arguments = non_default_cell_arguments(3, "lstm", "strided")
    cells = [kc.ConvGRU3DCell(**gru_arguments), kc.ConvLSTMCell(3, 2, 1)]
    cells.append(kc.ConvLSTM3DCell(**lstm_arguments))
    layer = kc.ConvRNN(cells, **NON_DEFAULT_LAYER_ARGUMENTS)
    rebuilt = assert_config_round_trips(
        kc.ConvRNN, layer, NON_DEFAULT_LAYER_ARGUMENTS
    )
    rebuilt_cells = rebuilt.cell.cells
    assert [type(c) for c in rebuilt_cells] == [type(c) for c in cells]
    assert_arguments_survived(rebuilt_cells[0].get_config(), gru_arguments)
    assert rebuilt_cells[1].rank == 3
    assert_arguments_survived(rebuilt_cells[2].get_config(), lstm_arguments)


def test_stacked_conv_rnn_from_config_still_checks_the_input_rank():
    layer = kc.ConvRNN([kc.ConvGRU2DCell(2, 3), kc.ConvGRU2DCell(2, 3)])
    rebuilt = kc.ConvRNN.from_config(copy.deepcopy(layer.get_config()))
    # The error names the whole (batch, time, ...) input, as it does for
    # the layer before serialization.
    with pytest.raises(ValueError, match=r"\(1, 2, 4, 3\)"):
        rebuilt(np.zeros((1, 2, 4, 3), "float32"))


@pytest.mark.parametrize("cls", PUBLIC_CLASSES, ids=lambda c: c.__name__)
def test_public_class_is_registered_under_keras_convgru(cls):
    name = "keras_convgru>" + cls.__name__
    assert keras.saving.get_registered_name(cls) == name
    assert keras.saving.get_registered_object(name) is cls


@pytest.mark.parametrize(
    "make",
    [
        lambda: kc.ConvGRUCell(3, 2, 1),
        lambda: kc.ConvLSTM1DCell(2, 3),
        lambda: kc.ConvGRU3D(2, 1, return_state=True),
        lambda: kc.ConvRNN([kc.ConvGRU1DCell(2, 3), kc.ConvLSTM1DCell(2, 3)]),
    ],
    ids=["ConvGRUCell", "ConvLSTM1DCell", "ConvGRU3D", "stacked-ConvRNN"],
)
def test_serialized_object_deserializes_by_registered_name(make):
    obj = make()
    serialized = keras.saving.serialize_keras_object(obj)
    assert serialized["registered_name"].startswith("keras_convgru>")
    rebuilt = keras.saving.deserialize_keras_object(serialized)
    assert type(rebuilt) is type(obj)
    assert rebuilt.get_config() == obj.get_config()


# --- .keras files ------------------------------------------------------------


def build_functional_model():
    frames_2d = keras.Input((3, 4, 4, 1), name="frames_2d")
    x = kc.ConvGRU2D(2, 3, padding="same", return_sequences=True)(frames_2d)
    x = keras.layers.Bidirectional(
        kc.ConvGRU2D(2, 3, padding="same", return_sequences=True)
    )(x)
    x = kc.ConvRNN(
        [
            kc.ConvGRU2DCell(2, 3, padding="same", reset_after=False),
            kc.ConvLSTM2DCell(2, 3, padding="same"),
        ]
    )(x)
    frames_1d = keras.Input((3, 5, 1), name="frames_1d")
    _, _, c = kc.ConvLSTM1D(2, 3, return_state=True)(frames_1d)
    frames_3d = keras.Input((2, 2, 2, 2, 1), name="frames_3d")
    y = kc.ConvLSTM3D(2, 1)(frames_3d)
    outputs = keras.layers.Concatenate()(
        [keras.layers.Flatten()(t) for t in (x, c, y)]
    )
    return keras.Model([frames_2d, frames_1d, frames_3d], outputs)


def random_inputs(model, rng):
    return [
        rng.normal(size=(2, *t.shape[1:])).astype("float32")
        for t in model.inputs
    ]


def assert_same_model(original, loaded, inputs):
    assert [w.name for w in loaded.weights] == [
        w.name for w in original.weights
    ]
    for expected, actual in zip(original.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(actual, expected)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(inputs)),
        keras.ops.convert_to_numpy(original(inputs)),
        atol=1e-6,
    )


def test_functional_model_saves_and_loads_with_import_only(tmp_path, rng):
    model = build_functional_model()
    path = tmp_path / "functional.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert {type(layer) for layer in loaded.layers} >= {
        kc.ConvGRU2D,
        kc.ConvRNN,
        kc.ConvLSTM1D,
        kc.ConvLSTM3D,
        keras.layers.Bidirectional,
    }
    assert_same_model(model, loaded, random_inputs(model, rng))


def test_functional_model_loads_with_custom_objects(tmp_path, rng):
    model = build_functional_model()
    path = tmp_path / "functional.keras"
    model.save(path)
    loaded = keras.models.load_model(path, custom_objects=CUSTOM_OBJECTS)
    assert_same_model(model, loaded, random_inputs(model, rng))


def test_model_with_peepholes_and_normalization_saves_and_loads(tmp_path, rng):
    frames = keras.Input((3, 5, 4, 2))
    x = kc.ConvLSTM2D(
        2,
        3,
        padding="same",
        return_sequences=True,
        peepholes="full",
        normalization="group",
        norm_groups=2,
    )(frames)
    x = kc.ConvGRU2D(
        2, 3, normalization="layer", reset_after=False, return_sequences=True
    )(x)
    x = kc.ConvRNN(
        [
            kc.ConvLSTM2DCell(2, 1, peepholes="channel"),
            kc.ConvGRU2DCell(2, 1, normalization="layer", norm_epsilon=0.1),
        ]
    )(x)
    model = keras.Model(frames, x)
    for weight in model.weights:
        weight.assign(rng.normal(scale=0.4, size=weight.shape))
    path = tmp_path / "options.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert_same_model(
        model, loaded, rng.normal(size=(2, 3, 5, 4, 2)).astype("float32")
    )


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_layer_and_stacked_cell_save_and_load(family, tmp_path, rng):
    # The family's layer, then its cell stacked with a ConvGRU2D cell in
    # ConvRNN; frames of any size.
    inputs = keras.Input((None, None, None, 2))
    x = FAMILIES[family].layer(3, return_sequences=True)(inputs)
    x = kc.ConvRNN(
        [
            FAMILIES[family].cell(2),
            kc.ConvGRU2DCell(2, 3, padding="same"),
        ]
    )(x)
    model = keras.Model(inputs, x)
    randomize_weights(model, rng, scale=0.4)
    path = tmp_path / f"{family}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert_same_model(
        model, loaded, rng.uniform(-1, 1, (2, 3, 6, 5, 2)).astype("float32")
    )


def test_sequential_model_saves_and_loads(tmp_path, rng):
    model = keras.Sequential(
        [
            keras.Input((3, 4, 4, 1)),
            kc.ConvLSTM2D(2, 3, padding="same", return_sequences=True),
            kc.ConvGRU2D(3, 3, strides=2, reset_after=False),
        ]
    )
    path = tmp_path / "sequential.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, keras.Sequential)
    assert_same_model(
        model, loaded, rng.normal(size=(2, 3, 4, 4, 1)).astype("float32")
    )


def _export_and_serve(model, path, x):
    """`model.export` to a SavedModel, reload it with TensorFlow, serve x."""
    import tensorflow as tf

    model.export(str(path), verbose=False)
    # Hold the loaded object while serving: its variables die with it.
    served = tf.saved_model.load(str(path))
    return served.serve(x).numpy()


def test_export_works_wherever_keras_conv_lstm_exports(tmp_path, rng):
    # The oracle: on this backend, does Keras's own ConvLSTM2D export? On
    # TensorFlow and JAX it does (JAX traces the batch size symbolically);
    # ours must then export too and serve the same numbers as predict.
    x = rng.normal(size=(2, 3, 8, 8, 2)).astype("float32")

    def model_of(layer):
        inputs = keras.Input((3, 8, 8, 2))
        return keras.Model(inputs, layer(inputs))

    reference = model_of(keras.layers.ConvLSTM2D(4, 3, padding="same"))
    try:
        _export_and_serve(reference, tmp_path / "keras", x)
    except Exception as error:  # Keras can't export here (torch backend).
        reason = error
    else:
        reason = None
    ours = model_of(kc.ConvLSTM2D(4, 3, padding="same"))
    if reason is not None:
        assert keras.backend.backend() == "torch", reason
        # Ours fails the same way as Keras's own layer there.
        with pytest.raises(type(reason)):
            _export_and_serve(ours, tmp_path / "ours", x)
        return
    served = _export_and_serve(ours, tmp_path / "ours", x)
    np.testing.assert_allclose(served, ours.predict(x, verbose=0), atol=1e-5)
