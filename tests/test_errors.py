"""Bad arguments and bad inputs fail early and clearly.

Each error is a ValueError (TypeError for a wrong type) whose message names
the argument and the value received, raised when the object is constructed
or when a layer is built or called: by keras_convgru itself or by Keras's
input checks at the layer's entry, never by a backend from deep inside a
convolution.
"""

import os

import keras
import numpy as np
import pytest
from helpers import Job
from helpers import python
from helpers import run

import keras_convgru as kc

PACKAGE_DIR = os.path.dirname(os.path.abspath(kc.__file__))
KERAS_INPUT_CHECK = os.path.join("keras", "src", "layers", "input_spec.py")


def assert_raised_early(excinfo):
    """The innermost frame is ours, or Keras's input check at layer entry."""
    origin = os.path.abspath(str(excinfo.traceback[-1].path))
    assert origin.startswith(PACKAGE_DIR) or origin.endswith(
        KERAS_INPUT_CHECK
    ), f"raised from {origin}: {excinfo.value}"


def raises(error, match, action):
    with pytest.raises(error, match=match) as excinfo:
        action()
    assert_raised_early(excinfo)


def sequences(*shape):
    return np.zeros(shape, "float32")


# Every family and level: the 2D layers and cells, and the rank-generic cells.
CONSTRUCTORS_2D = {
    "ConvGRU2D": kc.ConvGRU2D,
    "ConvLSTM2D": kc.ConvLSTM2D,
    "ConvGRU2DCell": kc.ConvGRU2DCell,
    "ConvLSTM2DCell": kc.ConvLSTM2DCell,
    "ConvGRUCell": lambda *a, **k: kc.ConvGRUCell(2, *a, **k),
    "ConvLSTMCell": lambda *a, **k: kc.ConvLSTMCell(2, *a, **k),
}


@pytest.fixture(params=list(CONSTRUCTORS_2D), ids=list(CONSTRUCTORS_2D))
def make(request):
    return CONSTRUCTORS_2D[request.param]


# --- arguments, at construction ----------------------------------------------


@pytest.mark.parametrize("filters", [0, -1])
def test_non_positive_filters_is_a_value_error(make, filters):
    raises(
        ValueError, rf"`filters`.*filters={filters}", lambda: make(filters, 3)
    )


@pytest.mark.parametrize(
    "filters,shown",
    [(2.5, "2.5"), ("4", "'4'"), (True, "True"), (None, "None")],
)
def test_non_integer_filters_is_a_type_error(make, filters, shown):
    raises(TypeError, rf"`filters`.*filters={shown}", lambda: make(filters, 3))


@pytest.mark.parametrize(
    "kernel_size,error,shown",
    [
        ((3, 3, 3), ValueError, r"\(3, 3, 3\)"),
        ((3,), ValueError, r"\(3,\)"),
        (0, ValueError, "0"),
        ((3, -1), ValueError, r"\(3, -1\)"),
        (2.5, TypeError, "2.5"),
        ((3, 1.5), TypeError, r"\(3, 1.5\)"),
    ],
)
def test_bad_kernel_size_names_the_value(make, kernel_size, error, shown):
    raises(
        error,
        rf"`kernel_size`.*kernel_size={shown}",
        lambda: make(2, kernel_size),
    )


@pytest.mark.parametrize("argument", ["strides", "dilation_rate"])
def test_bad_strides_or_dilation_names_the_value(make, argument):
    raises(
        ValueError,
        rf"`{argument}`.*{argument}=\(1, 0\)",
        lambda: make(2, 3, **{argument: (1, 0)}),
    )


def test_strides_and_dilation_above_one_are_exclusive(make):
    raises(
        ValueError,
        r"strides=\(2, 1\) and dilation_rate=\(1, 2\)",
        lambda: make(2, 3, strides=(2, 1), dilation_rate=(1, 2)),
    )


@pytest.mark.parametrize("padding", ["causal", "full", None])
def test_unsupported_padding_names_the_value(make, padding):
    raises(
        ValueError,
        rf"`padding`.*padding={padding!r}",
        lambda: make(2, 3, padding=padding),
    )


@pytest.mark.parametrize("data_format", ["channels_middle", "NHWC"])
def test_unknown_data_format_names_the_value(make, data_format):
    raises(
        ValueError,
        rf"`data_format`.*data_format='{data_format}'",
        lambda: make(2, 3, data_format=data_format),
    )


@pytest.mark.parametrize("argument", ["dropout", "recurrent_dropout"])
@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_dropout_outside_zero_one_names_the_value(make, argument, rate):
    raises(
        ValueError,
        rf"`{argument}`.*{argument}={rate}",
        lambda: make(2, 3, **{argument: rate}),
    )


def test_non_numeric_dropout_is_a_type_error(make):
    raises(
        TypeError,
        r"`dropout`.*dropout='half'",
        lambda: make(2, 3, dropout="half"),
    )


@pytest.mark.parametrize("cell_class", [kc.ConvGRUCell, kc.ConvLSTMCell])
@pytest.mark.parametrize("rank", [0, 4])
def test_rank_outside_one_to_three_names_the_value(cell_class, rank):
    raises(ValueError, rf"`rank`.*rank={rank}", lambda: cell_class(rank, 2, 3))


@pytest.mark.parametrize("cell_class", [kc.ConvGRUCell, kc.ConvLSTMCell])
def test_non_integer_rank_is_a_type_error(cell_class):
    raises(TypeError, r"`rank`.*rank=2.0", lambda: cell_class(2.0, 2, 3))


def test_stacking_cells_of_different_ranks_names_the_ranks():
    cells = [kc.ConvGRU2DCell(2, 3), kc.ConvLSTM1DCell(2, 3)]
    raises(ValueError, r"same rank.*\[1, 2\]", lambda: kc.ConvRNN(cells))


# --- inputs, at build and call -----------------------------------------------


@pytest.mark.parametrize(
    "layer_class,shape",
    [
        (kc.ConvGRU2D, (1, 2, 4, 3)),
        (kc.ConvLSTM2D, (1, 2, 4, 4, 4, 3)),
        (kc.ConvGRU1D, (1, 2, 4, 4, 3)),
        (kc.ConvLSTM3D, (1, 2, 4, 4, 3)),
    ],
)
def test_input_of_the_wrong_rank_names_the_shape(layer_class, shape):
    expected_ndim = layer_class.cell_class(2, 1).rank + 3
    match = rf"expected ndim={expected_ndim}, found ndim={len(shape)}.*" + (
        re_shape(shape)
    )
    raises(ValueError, match, lambda: layer_class(2, 1)(sequences(*shape)))
    symbolic = keras.Input(shape[1:])
    raises(
        ValueError, f"ndim={len(shape)}", lambda: layer_class(2, 1)(symbolic)
    )


def test_conv_rnn_input_of_the_wrong_rank_names_the_shape():
    layer = kc.ConvRNN(kc.ConvGRU2DCell(2, 3))
    raises(
        ValueError,
        r"expected ndim=5, found ndim=4.*\(1, 2, 4, 3\)",
        lambda: layer(sequences(1, 2, 4, 3)),
    )


def re_shape(shape):
    return r"\(" + ", ".join(str(n) for n in shape) + r"\)"


@pytest.mark.parametrize(
    "data_format,shape",
    [
        ("channels_last", (None, 8, 8, None)),
        ("channels_first", (None, None, 8, 8)),
    ],
)
def test_undefined_channel_dimension_names_the_shape(data_format, shape):
    layer = kc.ConvGRU2D(2, 3, data_format=data_format)
    shown = ", ".join(str(n) for n in shape[1:])
    raises(
        ValueError,
        rf"channel dimension.*{shown}.*data_format='{data_format}'",
        lambda: layer(keras.Input(shape)),
    )


@pytest.mark.parametrize("layer_class", [kc.ConvGRU2D, kc.ConvLSTM2D])
def test_valid_kernel_larger_than_static_frames_fails_at_build(layer_class):
    match = r"kernel_size=\(5, 5\).*spatial shape \(3, 3\)"
    raises(
        ValueError,
        match,
        lambda: layer_class(2, 5)(keras.Input((4, 3, 3, 1))),
    )
    raises(
        ValueError, match, lambda: layer_class(2, 5)(sequences(1, 4, 3, 3, 1))
    )


def test_valid_dilated_kernel_larger_than_frames_names_the_dilation():
    layer = kc.ConvGRU1D(2, 3, dilation_rate=3)
    raises(
        ValueError,
        r"kernel_size=\(3,\), dilation_rate=\(3,\).*\(6,\)",
        lambda: layer(sequences(1, 4, 6, 1)),
    )


def test_valid_kernel_larger_than_frames_of_unknown_size_fails_at_call():
    inputs = keras.Input((None, None, None, 1))
    model = keras.Model(inputs, kc.ConvGRU2D(2, 5)(inputs))
    raises(
        ValueError,
        r"kernel_size=\(5, 5\).*\(3, 3\)",
        lambda: model(sequences(1, 4, 3, 3, 1)),
    )


@pytest.mark.parametrize(
    "layer_class,count", [(kc.ConvGRU2D, 2), (kc.ConvLSTM2D, 1)]
)
def test_wrong_number_of_initial_states_names_both_counts(layer_class, count):
    layer = layer_class(2, 3, padding="same")
    states = [sequences(1, 3, 3, 2)] * count
    expected = 3 - count  # GRU takes one state, LSTM two
    raises(
        ValueError,
        rf"expects {expected} initial state.*Received: {count} tensor",
        lambda: layer(sequences(1, 4, 3, 3, 1), initial_state=states),
    )


@pytest.mark.parametrize(
    "state_shape", [(1, 3, 3, 5), (1, 4, 4, 2), (1, 3, 2), (2, 3, 3, 2)]
)
def test_initial_state_of_the_wrong_shape_names_both_shapes(state_shape):
    layer = kc.ConvGRU2D(2, 3, padding="same")
    raises(
        ValueError,
        r"initial_state\[0\] must have shape \(1, 3, 3, 2\).*"
        + re_shape(state_shape),
        lambda: layer(
            sequences(1, 4, 3, 3, 1), initial_state=[sequences(*state_shape)]
        ),
    )


def test_initial_state_of_a_strided_layer_must_match_the_output_frames():
    layer = kc.ConvLSTM2D(2, 3, strides=2, padding="same")
    states = [sequences(1, 3, 3, 2), sequences(1, 3, 3, 2)]
    raises(
        ValueError,
        r"must have shape \(1, 2, 2, 2\).*\(1, 3, 3, 2\)",
        lambda: layer(sequences(1, 4, 3, 3, 1), initial_state=states),
    )


@pytest.mark.parametrize(
    "make_layer",
    [
        lambda: kc.ConvGRU2D(2, 3, stateful=True),
        lambda: kc.ConvRNN(kc.ConvLSTM2DCell(2, 3), stateful=True),
    ],
    ids=["ConvGRU2D", "ConvRNN"],
)
def test_stateful_without_a_fixed_batch_size_names_the_shape(make_layer):
    raises(
        ValueError,
        r"stateful=True.*batch.*\(None, 4, 3, 3, 1\)",
        lambda: make_layer()(keras.Input((4, 3, 3, 1))),
    )


def test_stateful_without_fixed_frame_sizes_names_the_shape():
    layer = kc.ConvGRU2D(2, 3, stateful=True)
    raises(
        ValueError,
        r"stateful=True.*frame sizes.*\(2, 4, None, None, 1\)",
        lambda: layer(keras.Input(batch_shape=(2, 4, None, None, 1))),
    )


@pytest.mark.parametrize(
    "data_format,built_on,called_on,axis",
    [
        ("channels_last", (1, 4, 3, 3, 1), (1, 4, 3, 3, 2), -1),
        ("channels_first", (1, 4, 1, 3, 3), (1, 4, 2, 3, 3), 2),
    ],
)
def test_wrong_channel_count_after_build_names_the_shape(
    data_format, built_on, called_on, axis
):
    layer = kc.ConvGRU2D(2, 3, padding="same", data_format=data_format)
    layer(keras.Input(built_on[1:]))
    raises(
        ValueError,
        rf"axis {axis} of input shape to have value 1.*" + re_shape(called_on),
        lambda: layer(sequences(*called_on)),
    )


def test_plain_keras_rnn_over_stacked_cells_without_states_points_to_conv_rnn():
    # keras.layers.StackedRNNCells builds the cells after the first with a
    # `(batch, units)` shape, so they cannot size a zero state themselves.
    cells = [kc.ConvGRU2DCell(2, 3), kc.ConvLSTM2DCell(2, 3)]
    layer = keras.layers.RNN(keras.layers.StackedRNNCells(cells))
    raises(
        ValueError,
        r"ConvLSTM2DCell.get_initial_state.*\(None, None\).*ConvRNN",
        lambda: layer(sequences(1, 4, 5, 5, 1)),
    )


# --- loading without the import ----------------------------------------------


def test_loading_without_the_import_fails_as_the_saving_guide_quotes(tmp_path):
    # docs/guides/saving.md quotes this message next to its fix (the
    # import); Keras imports only its own packages while loading.
    path = str(tmp_path / "model.keras")
    model = keras.Sequential(
        [keras.Input((3, 6, 6, 2)), kc.ConvGRU2D(2, 3, padding="same")]
    )
    model.save(path)
    script = (
        "import keras\n"
        f"try:\n    keras.models.load_model({path!r})\n"
        "    print('loaded')\n"
        "except TypeError as error:\n    print(error)\n"
    )
    proc = run(
        Job("load_model", python("-c", script), separate_stderr=True), 300
    )
    keras_version = tuple(int(p) for p in keras.version().split(".")[:2])
    if keras_version >= (3, 15):
        assert "Could not locate class 'ConvGRU2D'" in proc.output, proc.errors
    else:
        # Keras 3.8 imported the module a file names by itself.
        assert "loaded" in proc.output or (
            "Could not locate class 'ConvGRU2D'" in proc.output
        ), proc.errors
    with open("docs/guides/saving.md", encoding="utf-8") as f:
        guide = " ".join(f.read().split())
    assert "Could not locate class 'ConvGRU2D'. Make sure custom classes" in (
        guide
    )
    assert "import keras_convgru # noqa: F401" in guide
