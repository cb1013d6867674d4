"""What the layers do besides their math: masking, stateful use, initial
states, dropout, Bidirectional, plain keras.layers.RNN, ConvRNN in every
kind of model, unknown frame sizes, unrolling, mixed precision and the
return structures.

Numbers are checked against the same layer run another way (a shorter
sequence, two halves, a go_backwards layer, ...) or against
keras.layers.GRU / LSTM: a 1x1 kernel on 1-pixel frames is a plain GRU.
"""

import keras
import numpy as np
import pytest
from helpers import assert_close
from helpers import randomize_weights
from helpers import to_numpy
from keras import ops

import keras_convgru as kc

BATCH = 2
TIME = 4
SIDE = 3
CHANNELS = 1
FILTERS = 2
ATOL = 1e-5


def frames(rng, batch=BATCH, time=TIME, spatial=(SIDE, SIDE)):
    shape = (batch, time, *spatial, CHANNELS)
    return rng.normal(size=shape).astype("float32")


def gru_2d(**kwargs):
    return kc.ConvGRU2D(FILTERS, 3, padding="same", **kwargs)


def lstm_2d(**kwargs):
    return kc.ConvLSTM2D(FILTERS, 3, padding="same", **kwargs)


def built_pair(make, x, first_kwargs, second_kwargs):
    """Two layers with the same weights, differing in some arguments."""
    first, second = make(**first_kwargs), make(**second_kwargs)
    first(x)
    second(x)
    second.set_weights(first.get_weights())
    return first, second


# --- the 1x1 / 1-pixel setting: a conv layer is keras.layers.GRU / LSTM ------

UNITS = 3
INPUT_DIM = 2


def one_pixel_pair(family, rng, **kwargs):
    """A 1x1 ConvGRU2D / ConvLSTM2D and the equivalent Keras GRU / LSTM."""
    conv_class = kc.ConvGRU2D if family == "gru" else kc.ConvLSTM2D
    dense_class = keras.layers.GRU if family == "gru" else keras.layers.LSTM
    conv = conv_class(UNITS, 1, **kwargs)
    dense = dense_class(UNITS, **kwargs)
    x = rng.normal(size=(BATCH, 5, 1, 1, INPUT_DIM)).astype("float32")
    conv(x)
    dense(x[:, :, 0, 0])
    weights = randomize_weights(conv, rng, 0.5)
    dense.set_weights(
        [w.reshape(d.shape) for w, d in zip(weights, dense.weights)]
    )
    return conv, dense, x


def squeeze_pixel(tensors):
    """Drops the 1x1 spatial axes of every output of a conv layer."""
    return [to_numpy(t)[..., 0, 0, :] for t in keras.tree.flatten(tensors)]


# --- masking -----------------------------------------------------------------


@pytest.mark.parametrize("make", [gru_2d, lstm_2d], ids=["gru", "lstm"])
def test_trailing_masked_steps_leave_the_final_state_of_the_shorter_sequence(
    make, rng
):
    x = frames(rng)
    layer = make(return_state=True)
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)
    masked = layer(x, mask=mask)
    for sample, length in enumerate(mask.sum(axis=1)):
        shorter = layer(x[:, :length])
        for got, expected in zip(masked, shorter):
            np.testing.assert_allclose(
                to_numpy(got)[sample], to_numpy(expected)[sample], atol=ATOL
            )


@pytest.mark.parametrize("order", ["gru-lstm", "lstm-gru"])
def test_masked_stack_ends_in_the_final_output_of_the_shorter_sequence(
    order, rng
):
    # Same filters in both cells, so mixing up the cells' states would not
    # fail on shapes: it would give wrong numbers.
    makers = {
        "gru": lambda: kc.ConvGRU2DCell(FILTERS, 3, padding="same"),
        "lstm": lambda: kc.ConvLSTM2DCell(FILTERS, 3, padding="same"),
    }
    layer = kc.ConvRNN([makers[name]() for name in order.split("-")])
    x = frames(rng)
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)
    masked = to_numpy(layer(x, mask=mask))
    for sample, length in enumerate(mask.sum(axis=1)):
        np.testing.assert_allclose(
            masked[sample], to_numpy(layer(x[:, :length]))[sample], atol=ATOL
        )


def test_masked_step_in_the_middle_is_skipped_and_repeats_the_output(rng):
    x = frames(rng)
    layer = gru_2d(return_sequences=True)
    mask = np.array([[1, 0, 1, 1], [1, 1, 0, 1]], bool)
    outputs = to_numpy(layer(x, mask=mask))
    kept = np.stack([x[sample, mask[sample]] for sample in range(BATCH)])
    np.testing.assert_allclose(
        outputs[:, -1], to_numpy(layer(kept))[:, -1], atol=ATOL
    )
    for sample in range(BATCH):
        # A masked step outputs the previous output.
        step = int(np.flatnonzero(~mask[sample])[0])
        np.testing.assert_array_equal(
            outputs[sample, step], outputs[sample, step - 1]
        )


@pytest.mark.parametrize("family", ["gru", "lstm"])
def test_one_pixel_masked_sequence_equals_keras_rnn_with_the_same_mask(
    family, rng
):
    conv, dense, x = one_pixel_pair(
        family, rng, return_sequences=True, return_state=True
    )
    # Masks in the middle, at the start and at the end.
    mask = np.array([[1, 0, 0, 1, 1], [0, 1, 1, 0, 1]], bool)
    expected = [
        to_numpy(t) for t in keras.tree.flatten(dense(x[:, :, 0, 0], mask=mask))
    ]
    for got, want in zip(squeeze_pixel(conv(x, mask=mask)), expected):
        np.testing.assert_allclose(got, want, atol=ATOL)


# --- stateful ----------------------------------------------------------------


@pytest.mark.parametrize("make", [gru_2d, lstm_2d], ids=["gru", "lstm"])
def test_stateful_layer_continues_from_the_previous_batch(make, rng):
    x = frames(rng)
    half = TIME // 2
    inputs = keras.Input(batch_shape=(BATCH, half, SIDE, SIDE, CHANNELS))
    stateful_layer = make(stateful=True, return_sequences=True)
    model = keras.Model(inputs, stateful_layer(inputs))
    whole = make(return_sequences=True)
    whole(x)
    whole.set_weights(stateful_layer.get_weights())

    halves = [to_numpy(model(x[:, :half])), to_numpy(model(x[:, half:]))]
    assert_close(np.concatenate(halves, axis=1), whole(x))

    stateful_layer.reset_state()
    for state in stateful_layer.states:
        np.testing.assert_array_equal(to_numpy(state), 0.0)
    assert_close(model(x[:, :half]), whole(x[:, :half]))


def test_stateful_stacked_conv_rnn_continues_and_resets(rng):
    x = frames(rng)
    inputs = keras.Input(batch_shape=(BATCH, None, SIDE, SIDE, CHANNELS))

    def make(**kwargs):
        cells = [
            kc.ConvGRU2DCell(FILTERS, 3, padding="same"),
            kc.ConvLSTM2DCell(FILTERS, 3, padding="same"),
        ]
        return kc.ConvRNN(cells, return_sequences=True, **kwargs)

    stateful_layer = make(stateful=True)
    model = keras.Model(inputs, stateful_layer(inputs))
    whole = make()
    whole(x)
    whole.set_weights(stateful_layer.get_weights())
    halves = [to_numpy(model(x[:, :1])), to_numpy(model(x[:, 1:]))]
    assert_close(np.concatenate(halves, axis=1), whole(x))

    stateful_layer.reset_state()
    for state in keras.tree.flatten(stateful_layer.states):
        np.testing.assert_array_equal(to_numpy(state), 0.0)


# --- initial_state -----------------------------------------------------------


@pytest.mark.parametrize("family", ["gru", "lstm"])
def test_one_pixel_initial_state_equals_keras_rnn_with_the_same_state(
    family, rng
):
    conv, dense, x = one_pixel_pair(family, rng, return_sequences=True)
    count = 1 if family == "gru" else 2
    states = [
        rng.normal(size=(BATCH, 1, 1, UNITS)).astype("float32")
        for _ in range(count)
    ]
    with_state = conv(x, initial_state=states)
    np.testing.assert_allclose(
        squeeze_pixel(with_state)[0],
        to_numpy(
            dense(x[:, :, 0, 0], initial_state=[s[:, 0, 0] for s in states])
        ),
        atol=ATOL,
    )
    # A non-zero initial state is really used.
    assert np.abs(to_numpy(with_state) - to_numpy(conv(x))).max() > 1e-3


@pytest.mark.parametrize(
    "make,count", [(gru_2d, 1), (lstm_2d, 2)], ids=["gru", "lstm"]
)
def test_initial_states_as_keras_inputs_in_a_functional_model(make, count, rng):
    x = frames(rng)
    states = [
        rng.normal(size=(BATCH, SIDE, SIDE, FILTERS)).astype("float32")
        for _ in range(count)
    ]
    sequence = keras.Input((None, None, None, CHANNELS))
    state_inputs = [keras.Input((None, None, FILTERS)) for _ in range(count)]
    layer = make()
    model = keras.Model(
        [sequence, *state_inputs], layer(sequence, initial_state=state_inputs)
    )
    output = model([x, *states])
    assert_close(output, layer(x, initial_state=states))
    assert np.abs(to_numpy(output) - to_numpy(layer(x))).max() > 1e-3


# --- dropout -----------------------------------------------------------------


def test_inference_with_dropout_equals_the_layer_without_dropout(rng):
    x = frames(rng)
    dropped, plain = built_pair(
        lstm_2d, x, {"dropout": 0.5, "recurrent_dropout": 0.5}, {}
    )
    expected = plain(x)
    assert_close(dropped(x), expected)
    assert_close(dropped(x, training=False), expected)
    assert_close(dropped(x, training=False), expected)


def test_training_with_dropout_changes_the_output(rng):
    x = frames(rng)
    for rates in ({"dropout": 0.5}, {"recurrent_dropout": 0.5}):
        dropped, plain = built_pair(gru_2d, x, rates, {})
        first = to_numpy(dropped(x, training=True))
        second = to_numpy(dropped(x, training=True))
        assert np.abs(first - to_numpy(plain(x))).max() > 1e-3, rates
        assert np.abs(first - second).max() > 1e-3, rates


def test_seeded_dropout_is_reproducible(rng):
    x = frames(rng)
    kwargs = {"dropout": 0.5, "recurrent_dropout": 0.5, "seed": 3}
    first, second = built_pair(gru_2d, x, kwargs, kwargs)
    assert_close(first(x, training=True), second(x, training=True))


# --- Bidirectional -----------------------------------------------------------


def test_bidirectional_with_unknown_frame_sizes_concatenates_both_directions(
    rng,
):
    inputs = keras.Input((None, None, None, CHANNELS))
    bidirectional = keras.layers.Bidirectional(gru_2d(return_sequences=True))
    outputs = bidirectional(inputs)
    assert tuple(outputs.shape) == (None, None, None, None, 2 * FILTERS)
    model = keras.Model(inputs, outputs)

    x = frames(rng, spatial=(3, 5))
    result = to_numpy(model(x))
    assert result.shape == (BATCH, TIME, 3, 5, 2 * FILTERS)
    forward = gru_2d(return_sequences=True)
    forward(x)
    forward.set_weights(bidirectional.forward_layer.get_weights())
    backward = gru_2d(return_sequences=True, go_backwards=True)
    backward(x)
    backward.set_weights(bidirectional.backward_layer.get_weights())
    np.testing.assert_allclose(
        result[..., :FILTERS], to_numpy(forward(x)), atol=ATOL
    )
    # Bidirectional reverses the backward sequence back into time order.
    np.testing.assert_allclose(
        result[..., FILTERS:], to_numpy(backward(x))[:, ::-1], atol=ATOL
    )


def test_bidirectional_masked_stack_backward_half_equals_go_backwards(rng):
    # Bidirectional rebuilds the backward layer from the forward one's
    # config: the rebuilt stack must still handle (batch, time) masks.
    x = frames(rng)
    mask = np.array([[1, 1, 0, 1], [1, 1, 1, 0]], bool)
    bidirectional = keras.layers.Bidirectional(kc.ConvRNN(stacked_cells()))
    result = to_numpy(bidirectional(x, mask=mask))
    assert result.shape == (BATCH, SIDE, SIDE, 2 * (FILTERS + 1))
    backward = kc.ConvRNN(stacked_cells(), go_backwards=True)
    backward(x)
    backward.set_weights(bidirectional.backward_layer.get_weights())
    np.testing.assert_allclose(
        result[..., FILTERS + 1 :], to_numpy(backward(x, mask=mask)), atol=ATOL
    )


def test_bidirectional_lstm_returns_the_states_of_both_directions():
    inputs = keras.Input((TIME, SIDE, SIDE, CHANNELS))
    outputs = keras.layers.Bidirectional(lstm_2d(return_state=True))(inputs)
    assert len(outputs) == 5
    assert tuple(outputs[0].shape) == (None, SIDE, SIDE, 2 * FILTERS)
    for state in outputs[1:]:
        assert tuple(state.shape) == (None, SIDE, SIDE, FILTERS)


# --- plain keras.layers.RNN and ConvRNN in every kind of model ---------------


def stacked_cells():
    return [
        kc.ConvGRU2DCell(FILTERS, 3, padding="same"),
        kc.ConvLSTM2DCell(FILTERS + 1, 3, padding="same"),
    ]


def zero_stack_states(batch):
    """Initial states for `stacked_cells()` on SIDE x SIDE frames."""
    gru = ops.zeros((batch, SIDE, SIDE, FILTERS))
    lstm = ops.zeros((batch, SIDE, SIDE, FILTERS + 1))
    return [gru, [lstm, lstm]]


def test_plain_keras_rnn_steps_a_conv_cell_like_conv_rnn(rng):
    x = frames(rng)
    cell = kc.ConvGRU2DCell(FILTERS, 3, padding="same")
    plain = keras.layers.RNN(cell, return_sequences=True)
    outputs = plain(x)
    assert tuple(outputs.shape) == (BATCH, TIME, SIDE, SIDE, FILTERS)
    # ConvRNN over the same cell (same weights) gives the same numbers.
    assert_close(kc.ConvRNN(cell, return_sequences=True)(x), outputs)


def test_plain_keras_rnn_over_stacked_cells_runs_given_initial_states(rng):
    x = frames(rng)
    layer = keras.layers.RNN(keras.layers.StackedRNNCells(stacked_cells()))
    # keras.layers.StackedRNNCells builds the second cell with a
    # `(batch, units)` shape, so it cannot size a zero state: pass one.
    outputs = layer(x, initial_state=zero_stack_states(BATCH))
    assert tuple(outputs.shape) == (BATCH, SIDE, SIDE, FILTERS + 1)
    reference = kc.ConvRNN(layer.cell.cells)
    assert_close(reference(x), outputs)


class PlainRNNModel(keras.Model):
    def __init__(self, stacked):
        super().__init__()
        cell = (
            keras.layers.StackedRNNCells(stacked_cells())
            if stacked
            else kc.ConvGRU2DCell(FILTERS, 3, padding="same")
        )
        self.stacked = stacked
        self.rnn = keras.layers.RNN(cell)
        self.head = keras.layers.Dense(1)

    def call(self, x):
        if self.stacked:
            states = zero_stack_states(ops.shape(x)[0])
            return self.head(self.rnn(x, initial_state=states))
        return self.head(self.rnn(x))


class ConvRNNModel(keras.Model):
    def __init__(self):
        super().__init__()
        self.rnn = kc.ConvRNN(stacked_cells(), return_sequences=True)
        self.last = kc.ConvGRU2D(FILTERS, 3, strides=2)

    def call(self, x):
        return self.last(self.rnn(x))


@pytest.mark.parametrize(
    "make_model,output_shape",
    [
        (lambda: PlainRNNModel(stacked=False), (SIDE, SIDE, 1)),
        (lambda: PlainRNNModel(stacked=True), (SIDE, SIDE, 1)),
        (ConvRNNModel, (1, 1, FILTERS)),
    ],
    ids=["keras-RNN-cell", "keras-RNN-stacked-cells", "ConvRNN-stacked"],
)
def test_subclassed_model_calls_and_fits(make_model, output_shape, rng):
    x = frames(rng)
    model = make_model()
    assert tuple(model(x).shape) == (BATCH, *output_shape)
    # fit traces the call (TensorFlow: with an unknown batch size).
    model.compile(keras.optimizers.SGD(0.01), "mse")
    y = rng.normal(size=(BATCH, *output_shape)).astype("float32")
    history = model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_conv_rnn_with_mixed_stacked_cells_in_sequential_and_functional(rng):
    x = frames(rng)
    sequential = keras.Sequential(
        [
            keras.Input((None, None, None, CHANNELS)),
            kc.ConvRNN(stacked_cells(), return_sequences=True),
        ]
    )
    assert tuple(sequential(x).shape) == (BATCH, TIME, SIDE, SIDE, FILTERS + 1)

    inputs = keras.Input((TIME, SIDE, SIDE, CHANNELS))
    layer = kc.ConvRNN(stacked_cells())
    outputs = layer(inputs)
    assert tuple(outputs.shape) == (None, SIDE, SIDE, FILTERS + 1)
    functional = keras.Model(inputs, outputs)
    layer.set_weights(sequential.layers[0].get_weights())
    assert_close(functional(x), sequential(x)[:, -1])


def test_conv_rnn_stack_with_return_state_returns_every_cells_states(rng):
    x = frames(rng)
    layer = kc.ConvRNN(stacked_cells(), return_state=True)
    result = layer(x)
    # [output, states of cell 1, states of cell 2], as keras.layers.RNN
    # over keras.layers.StackedRNNCells; flat: output, h, h, c.
    assert len(result) == 3
    output, gru_h, lstm_h, lstm_c = keras.tree.flatten(result)
    assert tuple(gru_h.shape) == (BATCH, SIDE, SIDE, FILTERS)
    assert tuple(lstm_h.shape) == (BATCH, SIDE, SIDE, FILTERS + 1)
    assert tuple(lstm_c.shape) == (BATCH, SIDE, SIDE, FILTERS + 1)
    # The stack's output is the last cell's output.
    assert_close(output, lstm_h)

    # The same structure symbolically, and a flat list of initial states.
    symbolic = layer(keras.Input((TIME, SIDE, SIDE, CHANNELS)))
    assert len(symbolic) == 3
    assert [tuple(t.shape[1:]) for t in keras.tree.flatten(symbolic)] == [
        tuple(t.shape[1:]) for t in (output, gru_h, lstm_h, lstm_c)
    ]
    states = [to_numpy(t) for t in keras.tree.flatten((gru_h, lstm_h, lstm_c))]
    flat = layer(x, initial_state=states)
    nested = layer(x, initial_state=[states[0], states[1:]])
    assert_close(flat, nested)


# --- unknown frame sizes -----------------------------------------------------


def test_one_model_runs_on_frames_of_different_sizes(rng):
    inputs = keras.Input((None, None, None, CHANNELS))
    x = kc.ConvLSTM2D(
        FILTERS, 3, strides=2, padding="valid", return_sequences=True
    )(inputs)
    outputs = kc.ConvGRU2D(FILTERS, 3, strides=2, padding="same")(x)
    assert tuple(outputs.shape) == (None, None, None, FILTERS)
    model = keras.Model(inputs, outputs)
    for height, width in ((7, 9), (6, 5)):
        x = frames(rng, time=3, spatial=(height, width))
        # valid: (n - 3) // 2 + 1, then same: ceil(n / 2).
        valid = ((height - 3) // 2 + 1, (width - 3) // 2 + 1)
        expected = (BATCH, -(-valid[0] // 2), -(-valid[1] // 2), FILTERS)
        assert tuple(model(x).shape) == expected


# --- unroll ------------------------------------------------------------------


@pytest.mark.parametrize("make", [gru_2d, lstm_2d], ids=["gru", "lstm"])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_unrolled_layer_gives_the_same_numbers(make, go_backwards, rng):
    x = frames(rng)
    kwargs = {"return_sequences": True, "go_backwards": go_backwards}
    looped, unrolled = built_pair(make, x, kwargs, {**kwargs, "unroll": True})
    assert_close(unrolled(x), looped(x))


def test_unrolled_layer_with_a_mask_gives_the_same_numbers(rng):
    x = frames(rng)
    mask = np.array([[1, 0, 1, 1], [1, 1, 1, 0]], bool)
    kwargs = {"return_sequences": True, "return_state": True}
    looped, unrolled = built_pair(gru_2d, x, kwargs, {**kwargs, "unroll": True})
    assert_close(unrolled(x, mask=mask), looped(x, mask=mask))


# --- mixed precision ---------------------------------------------------------


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_computes_in_half_and_keeps_float32_variables(
    policy, rng, float32_policy
):
    x = frames(rng)

    def make():
        # Both families, and a layer whose cell it builds itself.
        return keras.Sequential(
            [
                gru_2d(return_sequences=True),
                kc.ConvRNN(stacked_cells(), return_state=True),
            ]
        )

    reference = make()
    expected = reference(x)
    keras.mixed_precision.set_dtype_policy(policy)
    model = make()
    model(x)
    model.set_weights(reference.get_weights())
    assert all(w.dtype == "float32" for w in model.weights)
    outputs = keras.tree.flatten(model(x))
    assert len(outputs) == 4
    compute_dtype = policy.split("_")[1]
    for tensor in outputs:
        assert keras.backend.standardize_dtype(tensor.dtype) == compute_dtype
    outputs = [ops.cast(t, "float32") for t in outputs]
    assert_close(outputs, expected, atol=2e-2)


# --- return structures -------------------------------------------------------


@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("return_state", [False, True])
@pytest.mark.parametrize(
    "make,count", [(gru_2d, 1), (lstm_2d, 2)], ids=["gru", "lstm"]
)
def test_return_structure_follows_keras_gru_and_lstm(
    make, count, return_sequences, return_state, rng
):
    x = frames(rng)
    layer = make(return_sequences=return_sequences, return_state=return_state)
    result = layer(x)
    step = (BATCH, SIDE, SIDE, FILTERS)
    output_shape = (BATCH, TIME, *step[1:]) if return_sequences else step
    if not return_state:
        assert tuple(result.shape) == output_shape
        return
    assert isinstance(result, (list, tuple))
    assert len(result) == 1 + count
    output, *states = result
    assert tuple(output.shape) == output_shape
    assert [tuple(s.shape) for s in states] == [step] * count
    last = to_numpy(output)[:, -1] if return_sequences else to_numpy(output)
    np.testing.assert_allclose(to_numpy(states[0]), last, atol=ATOL)
