"""What a `ConvLSTM2D` supports, on the memory cells' layers: PredRNN's
spatiotemporal LSTM, PredRNN++'s causal LSTM (and its gradient highway
unit in a stack) and SA-ConvLSTM (../shared/API.md, "Shared by all of
them"). Their equations are checked against the NumPy reference in
`test_memory_cells_oracle.py`; gradients, hoisting, serialization and
portability run from the family table of `helpers.py`.
"""

import keras
import numpy as np
import pytest
from helpers import to_numpy
from keras import ops

import keras_convgru as kc

LAYERS = {
    "st_lstm": kc.SpatioTemporalLSTM2D,
    "causal_lstm": kc.CausalLSTM2D,
    "sa_conv_lstm": kc.SAConvLSTM2D,
}
CELLS = {
    "st_lstm": kc.SpatioTemporalLSTM2DCell,
    "causal_lstm": kc.CausalLSTM2DCell,
    "sa_conv_lstm": kc.SAConvLSTM2DCell,
    "ghu": kc.GradientHighwayUnit2DCell,
}
FILTERS = 3


def frames(batch=2, steps=4, rows=5, cols=6, channels=2, seed=0):
    rng = np.random.default_rng(seed)
    shape = (batch, steps, rows, cols, channels)
    return rng.uniform(-1, 1, size=shape).astype("float32")


def randomized(layer, x, seed=1):
    """Builds `layer` for `x` and gives it random weights (scale 0.3)."""
    layer.build(x.shape)
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        weight.assign(rng.normal(scale=0.3, size=weight.shape))
    return layer


@pytest.mark.parametrize("name", list(LAYERS))
def test_return_state_gives_the_output_and_the_three_states(name):
    x = frames()
    layer = LAYERS[name](FILTERS, 3, return_sequences=True, return_state=True)
    outputs = layer(x)
    assert len(outputs) == 4
    assert tuple(outputs[0].shape) == (2, 4, 5, 6, FILTERS)
    for state in outputs[1:]:
        assert tuple(state.shape) == (2, 5, 6, FILTERS)
    np.testing.assert_array_equal(
        to_numpy(outputs[1]), to_numpy(outputs[0])[:, -1]
    )


@pytest.mark.parametrize("name", list(LAYERS))
def test_frames_of_unknown_size_in_a_functional_model(name):
    inputs = keras.Input((None, None, None, 2))
    model = keras.Model(inputs, LAYERS[name](FILTERS, 3)(inputs))
    for rows, cols in ((5, 6), (3, 4)):
        out = model(frames(rows=rows, cols=cols))
        assert tuple(out.shape) == (2, rows, cols, FILTERS)


@pytest.mark.parametrize("name", list(LAYERS))
def test_stateful_layer_continues_where_the_last_batch_ended(name):
    x = frames(steps=4)
    whole = randomized(LAYERS[name](FILTERS, 3, return_sequences=True), x)
    stateful = LAYERS[name](FILTERS, 3, return_sequences=True, stateful=True)
    stateful.build(x.shape)
    stateful.set_weights(whole.get_weights())
    expected = to_numpy(whole(x))
    first = to_numpy(stateful(x[:, :2]))
    second = to_numpy(stateful(x[:, 2:]))
    np.testing.assert_allclose(
        np.concatenate([first, second], axis=1), expected, atol=1e-5
    )
    stateful.reset_state()
    np.testing.assert_allclose(
        to_numpy(stateful(x[:, :2])), expected[:, :2], atol=1e-5
    )


@pytest.mark.parametrize("name", list(CELLS))
def test_cell_in_a_plain_keras_rnn_equals_conv_rnn(name):
    x = frames()
    cell = CELLS[name](FILTERS, 3)
    ours = randomized(kc.ConvRNN(cell, return_sequences=True), x)
    keras_rnn = keras.layers.RNN(cell, return_sequences=True)
    np.testing.assert_allclose(
        to_numpy(keras_rnn(x)), to_numpy(ours(x)), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("name", list(LAYERS))
def test_bidirectional_concatenates_both_directions(name):
    x = frames()
    layer = keras.layers.Bidirectional(LAYERS[name](FILTERS, 3))
    assert tuple(layer(x).shape) == (2, 5, 6, 2 * FILTERS)


@pytest.mark.parametrize("name", list(LAYERS))
def test_dropout_is_active_in_training_only(name):
    x = frames()
    layer = randomized(
        LAYERS[name](FILTERS, 3, dropout=0.5, recurrent_dropout=0.5, seed=3),
        x,
    )
    plain = to_numpy(layer(x))
    np.testing.assert_array_equal(to_numpy(layer(x)), plain)
    assert np.abs(to_numpy(layer(x, training=True)) - plain).max() > 1e-3


@pytest.mark.parametrize("name", list(LAYERS))
def test_an_empty_batch_gives_empty_outputs(name):
    x = frames(batch=0)
    layer = LAYERS[name](FILTERS, 3, return_sequences=True, return_state=True)
    outputs = layer(x)
    assert tuple(outputs[0].shape) == (0, 4, 5, 6, FILTERS)
    assert all(tuple(s.shape) == (0, 5, 6, FILTERS) for s in outputs[1:])


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_mixed_precision_computes_in_half_with_float32_variables(name, policy):
    x = frames()
    full = randomized(LAYERS[name](FILTERS, 3), x)
    half = LAYERS[name](FILTERS, 3, dtype=policy)
    half.build(x.shape)
    half.set_weights(full.get_weights())
    out = half(x)
    assert keras.backend.standardize_dtype(out.dtype) == policy.split("_")[1]
    assert all(w.dtype == "float32" for w in half.weights)
    tolerance = 0.05 if policy == "mixed_bfloat16" else 0.01
    np.testing.assert_allclose(
        to_numpy(out).astype("float32"), to_numpy(full(x)), atol=tolerance
    )


def predrnn_model(steps=3, decoupling_weight=0.0):
    """PredRNN in miniature: two ST-LSTMs and a 1 x 1 head, trained to
    predict each next frame."""
    inputs = keras.Input((steps, 6, 6, 1))
    cells = [
        kc.SpatioTemporalLSTM2DCell(4, 3, decoupling_weight=decoupling_weight)
        for _ in range(2)
    ]
    hidden = kc.ConvRNN(cells, return_sequences=True)(inputs)
    outputs = keras.layers.Conv3D(1, 1)(hidden)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("decoupling_weight", [0.0, 0.1])
def test_predrnn_stack_trains_with_fit(decoupling_weight):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    video = rng.uniform(0, 1, size=(8, 4, 6, 6, 1)).astype("float32")
    model = predrnn_model(decoupling_weight=decoupling_weight)
    model.compile(keras.optimizers.Adam(0.01), "mse")
    history = model.fit(
        video[:, :-1], video[:, 1:], epochs=8, batch_size=4, verbose=0
    )
    losses = history.history["loss"]
    assert losses[-1] < 0.8 * losses[0], losses
    # The decoupling term is in the training loss, and only there.
    layer = model.layers[1]
    layer(video[:, :-1], training=True)
    assert len(layer.losses) == (2 if decoupling_weight else 0)
    layer(video[:, :-1])
    assert not layer.losses


def test_predrnn_pp_stack_with_a_highway_and_mixed_cells_saves_and_loads(
    tmp_path,
):
    x = frames()
    inputs = keras.Input(x.shape[1:])
    cells = [
        kc.CausalLSTM2DCell(FILTERS, 3),
        kc.GradientHighwayUnit2DCell(FILTERS, 3),
        kc.ConvLSTM2DCell(FILTERS, 3, padding="same"),
        kc.CausalLSTM2DCell(FILTERS, 3),
        kc.SAConvLSTM2DCell(FILTERS, 3),
    ]
    outputs = kc.ConvRNN(cells, return_sequences=True)(inputs)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(2)
    for weight in model.weights:
        weight.assign(rng.normal(scale=0.3, size=weight.shape))
    path = tmp_path / "predrnn_pp.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert [type(c) for c in loaded.layers[1]._cells] == [
        type(c) for c in cells
    ]
    np.testing.assert_allclose(
        to_numpy(loaded(x)), to_numpy(model(x)), rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("name", list(CELLS))
@pytest.mark.parametrize(
    "argument,value",
    [("strides", 2), ("padding", "valid"), ("dilation_rate", 2)],
)
def test_geometry_other_than_stride_1_same_is_named(name, argument, value):
    with pytest.raises(ValueError, match=f"`{argument}`.*{value}"):
        CELLS[name](FILTERS, 3, **{argument: value})


@pytest.mark.parametrize("name", list(CELLS))
def test_normalization_is_not_taken(name):
    with pytest.raises(ValueError, match="normalization='layer'"):
        CELLS[name](FILTERS, 3, normalization="layer")


@pytest.mark.parametrize("value", [-0.1, "0.1"])
def test_decoupling_weight_must_be_a_non_negative_float(value):
    error = TypeError if isinstance(value, str) else ValueError
    with pytest.raises(error, match="decoupling_weight"):
        kc.SpatioTemporalLSTM2DCell(FILTERS, 3, decoupling_weight=value)


def test_attention_filters_default_to_a_quarter_of_the_filters():
    assert kc.SAConvLSTM2DCell(8, 3).attention_filters == 2
    assert kc.SAConvLSTM2DCell(3, 3).attention_filters == 1
    with pytest.raises(ValueError, match="attention_filters"):
        kc.SAConvLSTM2DCell(8, 3, attention_filters=0)


def test_a_stack_adds_no_decoupling_loss_outside_training():
    layer = kc.ConvRNN(
        [kc.SpatioTemporalLSTM2DCell(2, 3, decoupling_weight=1.0)]
    )
    layer(ops.zeros((1, 2, 4, 4, 1)))
    assert not layer.losses
