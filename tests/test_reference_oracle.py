"""ConvGRU/ConvLSTM layers and cells against the plain NumPy reference.

The reference (``tests/reference.py``) is written from the equations of
the API reference (docs/api/conv_gru.md, docs/api/conv_lstm.md) and knows
nothing about Keras. Every test draws non-trivial random weights, sets
them with ``set_weights`` in the documented layout (so a wrong weight
layout fails here too) and compares float32 outputs and final states with
the float64 reference.
"""

import helpers
import keras
import numpy as np
import pytest
import reference
from helpers import GRU_CELLS
from helpers import GRU_LAYERS
from helpers import LSTM_CELLS
from helpers import LSTM_LAYERS
from helpers import contract_weight_shapes
from helpers import randomize_weights

import keras_convgru as kc

ATOL = 1e-5
RTOL = 1e-5
WEIGHT_SCALE = 0.3
BATCH = 2
TIME = 4
FILTERS = 3
KERNEL = 3
SPATIAL = {1: (7,), 2: (6, 5), 3: (5, 4, 5)}
CHANNELS = {1: 3, 2: 3, 3: 2}
# Batch 0 skips step 1; batch 1 skips its first and last steps.
MASK = np.array([[1, 0, 1, 1], [0, 1, 1, 0]], dtype=bool)


DEFAULTS = {
    "padding": "same",
    "strides": 1,
    "dilation_rate": 1,
    "use_bias": True,
    "reset_after": True,
    "go_backwards": False,
    "masked": False,
    "data_format": "channels_last",
    "initial_state": False,
}


def case(rank, **options):
    """A pytest param whose id lists what differs from DEFAULTS."""
    unknown = set(options) - set(DEFAULTS)
    assert not unknown, unknown
    spec = {**DEFAULTS, **options, "rank": rank}
    parts = [f"rank{rank}"]
    for name, value in options.items():
        parts.append(name if value is True else f"{name}={value}")
    return pytest.param(spec, id="-".join(parts))


GRU_CASES = [
    case(1),
    case(2),
    case(3),
    case(1, reset_after=False),
    case(2, reset_after=False),
    case(3, reset_after=False, padding="valid"),
    case(1, padding="valid"),
    case(2, padding="valid"),
    case(2, strides=2),
    case(2, strides=2, padding="valid"),
    case(1, strides=2, reset_after=False),
    case(3, strides=2),
    case(2, dilation_rate=2),
    case(1, dilation_rate=2, padding="valid"),
    case(3, dilation_rate=2, reset_after=False),
    case(2, use_bias=False),
    case(2, use_bias=False, reset_after=False),
    case(2, go_backwards=True),
    case(1, go_backwards=True, reset_after=False),
    case(2, masked=True),
    case(2, masked=True, go_backwards=True, reset_after=False),
    case(3, masked=True),
    case(2, data_format="channels_first"),
    case(1, data_format="channels_first", strides=2, padding="valid"),
    case(3, data_format="channels_first", reset_after=False),
    case(2, initial_state=True),
    case(2, initial_state=True, data_format="channels_first", strides=2),
]

LSTM_CASES = [
    case(1),
    case(2),
    case(3),
    case(1, padding="valid"),
    case(2, padding="valid"),
    case(2, strides=2),
    case(2, strides=2, padding="valid"),
    case(3, strides=2, padding="valid"),
    case(1, dilation_rate=2),
    case(2, dilation_rate=2, padding="valid"),
    case(2, use_bias=False),
    case(2, go_backwards=True),
    case(2, masked=True),
    case(1, masked=True, go_backwards=True),
    case(2, data_format="channels_first"),
    case(3, data_format="channels_first", strides=2),
    case(2, initial_state=True),
    case(1, initial_state=True, data_format="channels_first"),
]


def random_inputs(rng, spec):
    rank = spec["rank"]
    shape = (BATCH, TIME) + SPATIAL[rank] + (CHANNELS[rank],)
    x = rng.uniform(-1.0, 1.0, size=shape).astype("float32")
    if spec["data_format"] == "channels_first":
        x = np.moveaxis(x, -1, 2).copy()
    return x


def contract_weights(rng, rank, in_channels, gates, spec, gru):
    """Kernel, recurrent kernel and (maybe) bias in the documented layout."""
    shapes = contract_weight_shapes(
        "gru" if gru else "lstm",
        (KERNEL,) * rank,
        in_channels,
        FILTERS,
        use_bias=spec["use_bias"],
        reset_after=gru and spec["reset_after"],
    )
    return helpers.random_weights(shapes, rng, WEIGHT_SCALE)


def state_shape(spec):
    rank = spec["rank"]
    spatial = reference.conv_output_spatial_shape(
        SPATIAL[rank],
        KERNEL,
        spec["strides"],
        spec["padding"],
        spec["dilation_rate"],
    )
    if spec["data_format"] == "channels_first":
        return (BATCH, FILTERS) + spatial
    return (BATCH,) + spatial + (FILTERS,)


def conv_options(spec):
    return {
        "strides": spec["strides"],
        "padding": spec["padding"],
        "dilation_rate": spec["dilation_rate"],
    }


def layer_options(spec, gru):
    options = {
        **conv_options(spec),
        "filters": FILTERS,
        "kernel_size": KERNEL,
        "data_format": spec["data_format"],
        "use_bias": spec["use_bias"],
    }
    if gru:
        options["reset_after"] = spec["reset_after"]
    return options


def reference_for(spec, gru):
    channels_first = spec["data_format"] == "channels_first"
    if gru:
        if channels_first:
            return reference.conv_gru_reference_channels_first
        return reference.conv_gru_reference
    if channels_first:
        return reference.conv_lstm_reference_channels_first
    return reference.conv_lstm_reference


def run_reference(spec, gru, x, weights, initial_states):
    kernel, recurrent_kernel = weights[:2]
    bias = weights[2] if spec["use_bias"] else None
    kwargs = {
        **conv_options(spec),
        "go_backwards": spec["go_backwards"],
        "mask": MASK if spec["masked"] else None,
    }
    if gru:
        kwargs["reset_after"] = spec["reset_after"]
    if initial_states is not None:
        kwargs["h0"] = initial_states[0]
        if not gru:
            kwargs["c0"] = initial_states[1]
    return reference_for(spec, gru)(x, kernel, recurrent_kernel, bias, **kwargs)


def assert_all_close(actual, expected, what):
    actual = [keras.ops.convert_to_numpy(a) for a in actual]
    assert len(actual) == len(expected), what
    for i, (a, e) in enumerate(zip(actual, expected)):
        np.testing.assert_allclose(
            a, e, atol=ATOL, rtol=RTOL, err_msg=f"{what}, item {i}"
        )


def check_layer_against_reference(spec, gru):
    rng = np.random.default_rng(1234)
    rank = spec["rank"]
    gates = 3 if gru else 4
    layers = GRU_LAYERS if gru else LSTM_LAYERS
    x = random_inputs(rng, spec)
    weights = contract_weights(rng, rank, CHANNELS[rank], gates, spec, gru)

    layer = layers[rank](
        **layer_options(spec, gru),
        go_backwards=spec["go_backwards"],
        return_sequences=True,
        return_state=True,
    )
    layer.build(x.shape)
    layer.set_weights(weights)

    call_kwargs = {}
    initial_states = None
    if spec["masked"]:
        call_kwargs["mask"] = MASK
    if spec["initial_state"]:
        n_states = 1 if gru else 2
        initial_states = [
            rng.uniform(-0.5, 0.5, size=state_shape(spec)).astype("float32")
            for _ in range(n_states)
        ]
        call_kwargs["initial_state"] = initial_states

    actual = layer(x, **call_kwargs)
    expected = run_reference(spec, gru, x, weights, initial_states)
    assert_all_close(actual, expected, "[sequence, *final states]")


@pytest.mark.parametrize("spec", GRU_CASES)
def test_conv_gru_layer_matches_numpy_reference(spec):
    check_layer_against_reference(spec, gru=True)


@pytest.mark.parametrize("spec", LSTM_CASES)
def test_conv_lstm_layer_matches_numpy_reference(spec):
    check_layer_against_reference(spec, gru=False)


# --- The cells inside a plain keras.layers.RNN ------------------------------

CELL_CASES = [
    case(1),
    case(2),
    case(3),
    case(2, strides=2, padding="valid", reset_after=False),
    case(2, dilation_rate=2, use_bias=False),
    case(1, go_backwards=True),
    case(2, data_format="channels_first"),
]


def make_cell(spec, gru, generic):
    """The rank-specific cell, or the rank-generic base cell when asked."""
    options = layer_options(spec, gru)
    if generic:
        base = kc.ConvGRUCell if gru else kc.ConvLSTMCell
        return base(spec["rank"], **options)
    cells = GRU_CELLS if gru else LSTM_CELLS
    return cells[spec["rank"]](**options)


def plain_rnn(spec, gru, generic=False):
    return keras.layers.RNN(
        make_cell(spec, gru, generic),
        go_backwards=spec["go_backwards"],
        return_sequences=True,
        return_state=True,
    )


def check_cell_in_plain_rnn_against_reference(spec, gru, generic):
    rng = np.random.default_rng(99)
    rank = spec["rank"]
    x = random_inputs(rng, spec)
    weights = contract_weights(
        rng, rank, CHANNELS[rank], 3 if gru else 4, spec, gru
    )
    rnn = plain_rnn(spec, gru, generic)
    rnn.build(x.shape)
    rnn.set_weights(weights)
    actual = rnn(x)
    expected = run_reference(spec, gru, x, weights, None)
    assert_all_close(actual, expected, "[sequence, *final states]")


@pytest.mark.parametrize("spec", CELL_CASES)
def test_conv_gru_cell_stepped_by_plain_keras_rnn_matches_numpy_reference(
    spec,
):
    check_cell_in_plain_rnn_against_reference(spec, gru=True, generic=False)


@pytest.mark.parametrize("spec", CELL_CASES)
def test_conv_lstm_cell_stepped_by_plain_keras_rnn_matches_numpy_reference(
    spec,
):
    check_cell_in_plain_rnn_against_reference(spec, gru=False, generic=False)


@pytest.mark.parametrize("gru", [True, False], ids=["gru", "lstm"])
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_rank_generic_base_cell_matches_numpy_reference(gru, rank):
    spec = {**DEFAULTS, "rank": rank}
    check_cell_in_plain_rnn_against_reference(spec, gru=gru, generic=True)


# --- Hoisted input projection == the cell stepped one frame at a time -------

HOISTING_CASES = [
    case(2),
    case(1, strides=2, padding="valid"),
    case(3, reset_after=False),
    case(2, dilation_rate=2, go_backwards=True),
    case(2, use_bias=False, reset_after=False),
    case(2, data_format="channels_first", strides=2),
]


@pytest.mark.parametrize("gru", [True, False], ids=["gru", "lstm"])
@pytest.mark.parametrize("spec", HOISTING_CASES)
def test_layer_with_hoisted_input_projection_equals_cell_in_plain_keras_rnn(
    spec, gru
):
    rng = np.random.default_rng(7)
    rank = spec["rank"]
    x = random_inputs(rng, spec)
    layers = GRU_LAYERS if gru else LSTM_LAYERS
    layer = layers[rank](
        **layer_options(spec, gru),
        go_backwards=spec["go_backwards"],
        return_sequences=True,
        return_state=True,
    )
    layer.build(x.shape)
    weights = randomize_weights(layer, rng, WEIGHT_SCALE)
    rnn = plain_rnn(spec, gru)
    rnn.build(x.shape)
    rnn.set_weights(weights)

    expected = [keras.ops.convert_to_numpy(t) for t in rnn(x)]
    assert_all_close(layer(x), expected, "layer vs plain RNN(cell)")


# --- The reference itself against Keras's own ops and ConvLSTM --------------


@pytest.mark.parametrize(
    "rank, strides, padding, dilation_rate, size",
    [
        (1, 1, "same", 1, 7),
        (1, 2, "same", 1, 6),
        (2, 2, "same", 1, 6),
        (2, 2, "valid", 1, 7),
        (2, 1, "same", 2, 6),
        (3, 2, "same", 1, 5),
        (3, 1, "valid", 2, 6),
    ],
)
def test_reference_convolution_matches_keras_ops_conv(
    rank, strides, padding, dilation_rate, size
):
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, size=(2,) + (size,) * rank + (3,)).astype("float32")
    w = rng.normal(scale=0.3, size=(3,) * rank + (3, 4)).astype("float32")
    expected = reference.conv_nd(x, w, strides, padding, dilation_rate)
    actual = keras.ops.conv(
        x, w, strides=strides, padding=padding, dilation_rate=dilation_rate
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(actual), expected, atol=ATOL, rtol=RTOL
    )


@pytest.mark.parametrize(
    "data_format, strides, padding",
    [
        ("channels_last", 2, "same"),
        ("channels_first", 1, "valid"),
    ],
)
def test_reference_lstm_matches_keras_conv_lstm2d(
    data_format, strides, padding
):
    rng = np.random.default_rng(5)
    spec = {
        **DEFAULTS,
        "rank": 2,
        "strides": strides,
        "padding": padding,
        "data_format": data_format,
    }
    x = random_inputs(rng, spec)
    # Keras computes channels_first on TensorFlow's CPU only where oneDNN
    # is on, so it runs channels last on the transposed frames (the weights
    # do not depend on the data format) and its results are moved back.
    channels_first = data_format == "channels_first"
    x_last = np.moveaxis(x, 2, -1) if channels_first else x
    keras_layer = keras.layers.ConvLSTM2D(
        FILTERS,
        KERNEL,
        strides=strides,
        padding=padding,
        data_format="channels_last",
        return_sequences=True,
        return_state=True,
    )
    keras_layer.build(x_last.shape)
    weights = randomize_weights(keras_layer, rng, WEIGHT_SCALE)
    expected = run_reference(spec, False, x, weights, None)
    actual = [keras.ops.convert_to_numpy(a) for a in keras_layer(x_last)]
    if channels_first:
        actual = [np.moveaxis(actual[0], -1, 2)] + [
            np.moveaxis(state, -1, 1) for state in actual[1:]
        ]
    assert_all_close(actual, expected, "keras.layers.ConvLSTM2D")
