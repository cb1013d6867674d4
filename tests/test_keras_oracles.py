"""keras_convgru against Keras's own recurrent layers.

(a) A ConvGRU with an all-ones kernel on 1-pixel frames is keras.layers.GRU.
(b) kc.ConvLSTM{1,2,3}D is a drop-in for keras.layers.ConvLSTM{1,2,3}D:
    same weights, same outputs and states.
(c) Return structures mirror keras.layers.GRU / LSTM, with the spatial
    dimensions of the state inserted before the channel axis.
"""

import keras
import numpy as np
import pytest
from helpers import GRU_LAYERS
from helpers import LSTM_LAYERS
from helpers import randomize_weights

import keras_convgru as kc

ATOL = 1e-5
RTOL = 1e-5
BATCH = 2
TIME = 5

KERAS_CONV_LSTM = {
    1: keras.layers.ConvLSTM1D,
    2: keras.layers.ConvLSTM2D,
    3: keras.layers.ConvLSTM3D,
}


def to_numpy(tensors):
    return [keras.ops.convert_to_numpy(t) for t in tensors]


# --- (a) 1x1 ConvGRU on 1-pixel frames == keras.layers.GRU ------------------

GRU_UNITS = 4
GRU_INPUT_DIM = 3
GRU_MASK = np.array([[1, 1, 0, 1, 1], [0, 1, 1, 1, 0]], dtype=bool)


def gru_case(rank, reset_after, go_backwards, use_bias=True, masked=False):
    parts = [
        f"rank{rank}",
        "reset_after" if reset_after else "reset_before",
        "backwards" if go_backwards else "forwards",
    ]
    if not use_bias:
        parts.append("no_bias")
    if masked:
        parts.append("masked")
    return pytest.param(
        rank, reset_after, go_backwards, use_bias, masked, id="-".join(parts)
    )


GRU_CASES = [
    gru_case(rank, reset_after, go_backwards)
    for rank in (1, 2, 3)
    for reset_after in (True, False)
    for go_backwards in (False, True)
] + [
    gru_case(2, True, False, use_bias=False),
    gru_case(1, False, True, use_bias=False),
    gru_case(2, True, False, masked=True),
    gru_case(3, False, True, masked=True),
]


@pytest.mark.parametrize(
    "rank, reset_after, go_backwards, use_bias, masked", GRU_CASES
)
def test_unit_kernel_conv_gru_on_one_pixel_frames_equals_keras_gru(
    rank, reset_after, go_backwards, use_bias, masked
):
    rng = np.random.default_rng(11)
    x = rng.uniform(-1, 1, size=(BATCH, TIME, GRU_INPUT_DIM))
    x = x.astype("float32")
    frames = x.reshape((BATCH, TIME) + (1,) * rank + (GRU_INPUT_DIM,))
    flags = {
        "reset_after": reset_after,
        "go_backwards": go_backwards,
        "use_bias": use_bias,
        "return_sequences": True,
        "return_state": True,
    }

    gru = keras.layers.GRU(GRU_UNITS, **flags)
    gru.build(x.shape)
    weights = randomize_weights(gru, rng, scale=0.5)

    conv_gru = GRU_LAYERS[rank](GRU_UNITS, kernel_size=1, **flags)
    conv_gru.build(frames.shape)
    unit_kernel = (1,) * rank
    conv_weights = [
        weights[0].reshape(unit_kernel + weights[0].shape),
        weights[1].reshape(unit_kernel + weights[1].shape),
    ] + weights[2:]
    conv_gru.set_weights(conv_weights)

    mask = {"mask": GRU_MASK} if masked else {}
    expected_sequence, expected_state = to_numpy(gru(x, **mask))
    sequence, state = to_numpy(conv_gru(frames, **mask))

    pixel = (slice(None), slice(None)) + (0,) * rank
    assert sequence.shape == (BATCH, TIME) + (1,) * rank + (GRU_UNITS,)
    np.testing.assert_allclose(
        sequence[pixel], expected_sequence, atol=ATOL, rtol=RTOL
    )
    assert state.shape == (BATCH,) + (1,) * rank + (GRU_UNITS,)
    np.testing.assert_allclose(
        state[pixel[:1] + pixel[2:]], expected_state, atol=ATOL, rtol=RTOL
    )


# --- (b) kc.ConvLSTM*D is a drop-in for keras.layers.ConvLSTM*D -------------

LSTM_SPATIAL = {1: (7,), 2: (6, 5), 3: (5, 4, 5)}
LSTM_CHANNELS = {1: 3, 2: 3, 3: 2}


def lstm_case(rank, **options):
    parts = [f"rank{rank}"] + [
        name if value is True else f"{name}={value}"
        for name, value in options.items()
    ]
    return pytest.param(rank, options, id="-".join(parts))


# keras.layers.ConvLSTM*D computes channels_first on TensorFlow's CPU only
# where oneDNN is on (CPUs with AVX-512), so the oracle always runs channels
# last on the transposed frames, with the same weights (their layout does
# not depend on the data format), and its results are transposed back.
LSTM_CASES = [
    lstm_case(1, padding="same"),
    lstm_case(1, padding="valid"),
    lstm_case(1, padding="same", strides=2),
    lstm_case(1, padding="valid", data_format="channels_first"),
    lstm_case(2, padding="same"),
    lstm_case(2, padding="valid"),
    lstm_case(2, padding="same", strides=2),
    lstm_case(2, padding="valid", strides=2),
    lstm_case(2, padding="same", dilation_rate=2),
    lstm_case(2, padding="same", data_format="channels_first"),
    lstm_case(2, padding="valid", strides=2, data_format="channels_first"),
    lstm_case(2, padding="same", go_backwards=True),
    lstm_case(2, padding="valid", use_bias=False),
    lstm_case(3, padding="same"),
    lstm_case(3, padding="valid", strides=2),
    lstm_case(3, padding="same", data_format="channels_first"),
]


@pytest.mark.parametrize("rank, options", LSTM_CASES)
def test_conv_lstm_with_keras_conv_lstm_weights_gives_same_output_and_states(
    rank, options
):
    rng = np.random.default_rng(21)
    shape = (BATCH, TIME) + LSTM_SPATIAL[rank] + (LSTM_CHANNELS[rank],)
    x_last = rng.uniform(-1, 1, size=shape).astype("float32")
    channels_first = options.get("data_format") == "channels_first"
    x = np.moveaxis(x_last, -1, 2).copy() if channels_first else x_last
    kwargs = {
        "filters": 3,
        "kernel_size": 3,
        "return_sequences": True,
        "return_state": True,
        **options,
    }

    keras_layer = KERAS_CONV_LSTM[rank](
        **{**kwargs, "data_format": "channels_last"}
    )
    keras_layer.build(x_last.shape)
    keras_weights = randomize_weights(keras_layer, rng, scale=0.3)
    layer = LSTM_LAYERS[rank](**kwargs)
    layer.build(x.shape)

    assert [w.shape for w in layer.get_weights()] == [
        w.shape for w in keras_weights
    ]
    layer.set_weights(keras_weights)

    expected = to_numpy(keras_layer(x_last))
    if channels_first:
        sequence, h, c = expected
        expected = [
            np.moveaxis(sequence, -1, 2),
            np.moveaxis(h, -1, 1),
            np.moveaxis(c, -1, 1),
        ]
    actual = to_numpy(layer(x))
    assert len(actual) == 3  # [output, h_T, c_T]
    for name, a, e in zip(["output", "h_T", "c_T"], actual, expected):
        assert a.shape == e.shape, name
        np.testing.assert_allclose(a, e, atol=ATOL, rtol=RTOL, err_msg=name)


# --- (c) Return structures mirror keras.layers.GRU / LSTM -------------------

FILTERS = 5
CHANNELS = 3
FRAME = (7, 6)
# "valid", kernel 3, stride 2: (7 - 3) // 2 + 1 = 3 and (6 - 3) // 2 + 1 = 2.
STATE_FRAME = (3, 2)

FAMILIES = {
    "gru": (kc.ConvGRU2D, keras.layers.GRU),
    "lstm": (kc.ConvLSTM2D, keras.layers.LSTM),
}
RETURN_FLAGS = [
    pytest.param(False, False, id="last_output"),
    pytest.param(True, False, id="sequences"),
    pytest.param(False, True, id="last_output-state"),
    pytest.param(True, True, id="sequences-state"),
]


def make_pair(family, return_sequences, return_state):
    conv_layer, keras_layer = FAMILIES[family]
    flags = {
        "return_sequences": return_sequences,
        "return_state": return_state,
    }
    conv = conv_layer(FILTERS, 3, strides=2, padding="valid", **flags)
    return conv, keras_layer(FILTERS, **flags)


def assert_structure_mirrors_keras(conv_out, keras_out, batch):
    """Same container type and length; each tensor gains the state frame."""
    if isinstance(keras_out, (list, tuple)):
        assert type(conv_out) is type(keras_out)
        assert len(conv_out) == len(keras_out)
    else:
        assert not isinstance(conv_out, (list, tuple, dict))
        conv_out, keras_out = [conv_out], [keras_out]
    for c, k in zip(conv_out, keras_out):
        assert tuple(k.shape)[0] == batch
        expected = tuple(k.shape)[:-1] + STATE_FRAME + (FILTERS,)
        assert tuple(c.shape) == expected


@pytest.mark.parametrize("return_sequences, return_state", RETURN_FLAGS)
@pytest.mark.parametrize("family", ["gru", "lstm"])
def test_eager_return_structure_mirrors_keras_rnn_with_state_frame_inserted(
    family, return_sequences, return_state
):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(BATCH, TIME) + FRAME + (CHANNELS,))
    x = x.astype("float32")
    conv, rnn = make_pair(family, return_sequences, return_state)

    conv_out = conv(x)
    keras_out = rnn(x[:, :, 0, 0, :])

    if not isinstance(keras_out, (list, tuple)):
        assert keras.ops.is_tensor(conv_out)
    assert_structure_mirrors_keras(conv_out, keras_out, batch=BATCH)


@pytest.mark.parametrize("return_sequences, return_state", RETURN_FLAGS)
@pytest.mark.parametrize("family", ["gru", "lstm"])
def test_symbolic_return_structure_mirrors_keras_rnn_in_functional_model(
    family, return_sequences, return_state
):
    conv, rnn = make_pair(family, return_sequences, return_state)
    conv_in = keras.Input((TIME,) + FRAME + (CHANNELS,))
    keras_in = keras.Input((TIME, CHANNELS))

    conv_out = conv(conv_in)
    keras_out = rnn(keras_in)
    assert_structure_mirrors_keras(conv_out, keras_out, batch=None)

    model = keras.Model(conv_in, conv_out)
    keras_model = keras.Model(keras_in, keras_out)
    x = np.zeros((BATCH, TIME) + FRAME + (CHANNELS,), "float32")
    assert_structure_mirrors_keras(
        model(x), keras_model(x[:, :, 0, 0, :]), batch=BATCH
    )


@pytest.mark.parametrize("family", ["gru", "lstm"])
def test_unknown_spatial_size_is_inferred_per_call(family):
    conv, _ = make_pair(family, return_sequences=True, return_state=True)
    inputs = keras.Input((TIME, None, None, CHANNELS))
    outputs = conv(inputs)
    for symbolic in outputs:
        assert tuple(symbolic.shape)[-3:] == (None, None, FILTERS)

    model = keras.Model(inputs, outputs)
    for frame, state_frame in [((7, 6), (3, 2)), ((9, 9), (4, 4))]:
        x = np.zeros((BATCH, TIME) + frame + (CHANNELS,), "float32")
        sequence, *states = model(x)
        assert tuple(sequence.shape) == (BATCH, TIME) + state_frame + (FILTERS,)
        for state in states:
            assert tuple(state.shape) == (BATCH,) + state_frame + (FILTERS,)
