"""A time step is a pure function of its inputs, states and weights.

Dropout masks are drawn once per sequence, before the time loop, for a
single cell, for every cell of a stack in `ConvRNN` and for a keras_convgru
cell inside a plain `keras.layers.RNN`, on every backend; nothing a step
reads is set around the loop, so `keras.RematScope` (which re-runs steps in
the backward pass) gives the same weight update as no scope.

The masks are observed through *probe* cells: 1x1 ConvGRU2D cells whose
weights make the output reveal the mask. With the update gate shut
(`z = σ(-30)`, so `h' = h̃`) and the reset gate open (`r = σ(30)`):

* input dropout, no recurrent weight: `h_t = tanh(m ⊙ x_t)`, zero exactly
  where the input mask `m` is zero;
* recurrent dropout, recurrent weight 1: `h_t = tanh(x_t + m ⊙ h_(t-1))`,
  equal to `tanh(x_t)` exactly where the recurrent mask `m` is zero (for
  `t >= 2`, when `h_(t-1)` is not zero).

A mask drawn once per sequence drops the same pixels at every step; masks
drawn per step would drop different ones.
"""

import keras
import numpy as np
import pytest
from keras import ops

import keras_convgru as kc

STEPS, SIDE = 5, 6
RATE = 0.5


def probe_weights(kind):
    kernel = np.zeros((1, 1, 1, 3), "float32")
    kernel[..., 2] = 1.0  # the candidate sees the input
    recurrent_kernel = np.zeros((1, 1, 1, 3), "float32")
    if kind == "recurrent":
        recurrent_kernel[..., 2] = 1.0
    bias = np.zeros((2, 3), "float32")
    bias[0, 0] = -30.0  # z shut: h' = h_tilde
    bias[0, 1] = 30.0  # r open
    return [kernel, recurrent_kernel, bias]


def probe_cell(kind):
    rates = {
        "input": {"dropout": RATE},
        "recurrent": {"recurrent_dropout": RATE},
    }
    return kc.ConvGRU2DCell(1, 1, seed=5, **rates[kind])


def passthrough_cell():
    """h = tanh(x): never zero for x != 0, no dropout."""
    return kc.ConvGRU2DCell(1, 1)


def set_cell_weights(cell, weights):
    for variable, value in zip(cell.weights, weights):
        variable.assign(value)


def dropped_pixels(kind, outputs, inputs):
    """Per step, which pixels the probe's dropout mask zeroed."""
    if kind == "input":
        return np.isclose(outputs, 0.0, atol=1e-6)
    return np.isclose(outputs, np.tanh(inputs), atol=1e-6)


def assert_one_mask_per_sequence(kind, outputs, probe_inputs):
    dropped = dropped_pixels(kind, outputs, probe_inputs)
    first = 0 if kind == "input" else 1  # the recurrent mask acts from t=2
    patterns = dropped[:, first:]
    # Some pixels dropped and some kept, every step the same ones.
    assert patterns.any() and not patterns.all()
    for t in range(1, patterns.shape[1]):
        np.testing.assert_array_equal(patterns[:, t], patterns[:, 0])


def frames():
    return np.ones((2, STEPS, SIDE, SIDE, 1), "float32")


@pytest.mark.parametrize("kind", ["input", "recurrent"])
@pytest.mark.parametrize("hoist", [True, False], ids=["hoisted", "stepped"])
def test_conv_rnn_draws_a_single_cells_masks_once_per_sequence(kind, hoist):
    layer = kc.ConvRNN(probe_cell(kind), return_sequences=True)
    layer.max_hoisted_step_elements = 10**9 if hoist else 0
    x = frames()
    layer.build(x.shape)
    set_cell_weights(layer.cell, probe_weights(kind))
    outputs = ops.convert_to_numpy(layer(x, training=True))[..., 0]
    assert_one_mask_per_sequence(kind, outputs, x[..., 0])


@pytest.mark.parametrize("kind", ["input", "recurrent"])
def test_conv_rnn_draws_the_masks_of_every_stacked_cell_once(kind):
    # The probe is the second cell: its masks are drawn for an input that
    # the first cell computes.
    first, probe = passthrough_cell(), probe_cell(kind)
    layer = kc.ConvRNN([first, probe], return_sequences=True)
    x = frames()
    layer.build(x.shape)
    set_cell_weights(first, probe_weights("input"))
    set_cell_weights(probe, probe_weights(kind))
    outputs = ops.convert_to_numpy(layer(x, training=True))[..., 0]
    probe_inputs = np.tanh(x[..., 0])
    assert_one_mask_per_sequence(kind, outputs, probe_inputs)


@pytest.mark.parametrize("kind", ["input", "recurrent"])
def test_plain_keras_rnn_draws_a_kc_cells_masks_once_per_sequence(kind):
    cell = probe_cell(kind)
    layer = keras.layers.RNN(cell, return_sequences=True)
    x = frames()
    layer.build(x.shape)
    set_cell_weights(cell, probe_weights(kind))
    outputs = ops.convert_to_numpy(layer(x, training=True))[..., 0]
    assert_one_mask_per_sequence(kind, outputs, x[..., 0])


def test_masks_are_new_for_every_sequence():
    layer = kc.ConvRNN(probe_cell("input"), return_sequences=True)
    x = frames()
    layer.build(x.shape)
    set_cell_weights(layer.cell, probe_weights("input"))
    first = ops.convert_to_numpy(layer(x, training=True))
    second = ops.convert_to_numpy(layer(x, training=True))
    assert not np.array_equal(first, second)


def stacked_dropout_model():
    inputs = keras.Input((4, 8, 8, 2))
    cells = [
        kc.ConvGRU2DCell(4, 3, padding="same", dropout=0.5),
        kc.ConvLSTM2DCell(4, 3, padding="same", recurrent_dropout=0.5),
    ]
    outputs = kc.ConvRNN(cells)(inputs)
    return keras.Model(inputs, outputs)


def test_fit_trains_a_stack_with_dropout_in_every_cell():
    # On JAX the masks of stacked cells used to be drawn inside the scan
    # (UnexpectedTracerError under jit).
    model = stacked_dropout_model()
    model.compile(keras.optimizers.SGD(0.1), "mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 4, 8, 8, 2)).astype("float32")
    y = rng.normal(size=(4, 8, 8, 4)).astype("float32")
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, y, batch_size=2, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    after = model.get_weights()
    assert all(not np.array_equal(a, b) for a, b in zip(before, after))


# --- rematerialization -------------------------------------------------------

REMAT = hasattr(keras, "RematScope")  # Keras >= 3.9
LAYERS = {
    "keras.ConvLSTM2D": lambda **kw: keras.layers.ConvLSTM2D(
        4, 3, padding="same", **kw
    ),
    "kc.ConvGRU2D": lambda **kw: kc.ConvGRU2D(4, 3, padding="same", **kw),
    "kc.ConvLSTM2D": lambda **kw: kc.ConvLSTM2D(4, 3, padding="same", **kw),
    "kc.ConvRNN stack": lambda **kw: kc.ConvRNN(
        [
            kc.ConvGRU2DCell(4, 3, padding="same", **kw),
            kc.ConvLSTM2DCell(4, 3, padding="same", **kw),
        ]
    ),
}


def weights_after_one_step(make, remat, **kwargs):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3, 6, 6, 2))
    if remat:
        with keras.RematScope(mode="full"):
            outputs = make(**kwargs)(inputs)
    else:
        outputs = make(**kwargs)(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.1), "mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 6, 6, 2)).astype("float32")
    y = rng.normal(size=(2, 6, 6, 4)).astype("float32")
    model.train_on_batch(x, y)
    return model.get_weights()


def keras_conv_lstm2d_fails_under_remat_scope():
    try:
        weights_after_one_step(LAYERS["keras.ConvLSTM2D"], True)
    except (ValueError, RuntimeError):
        return True
    return False


# keras.RematScope exists from Keras 3.9 on; with Keras 3.8 there is
# nothing to test, so these tests are not defined there. It trains
# keras.layers.ConvLSTM2D on torch; on TensorFlow (custom_gradient with
# keyword arguments in graph mode) and JAX (the model cannot be built
# under the scope) Keras's own layer fails, which the second test pins so
# that a Keras release that lifts the limit shows up here.
if REMAT and keras.backend.backend() == "torch":

    @pytest.mark.parametrize("name", sorted(LAYERS))
    def test_remat_scope_gives_the_weight_update_of_no_scope(name):
        plain = weights_after_one_step(LAYERS[name], False)
        remat = weights_after_one_step(LAYERS[name], True)
        assert len(plain) > 0
        for a, b in zip(plain, remat):
            np.testing.assert_allclose(a, b, atol=1e-5)

    @pytest.mark.parametrize("name", ["kc.ConvGRU2D", "kc.ConvRNN stack"])
    def test_remat_scope_trains_with_dropout(name):
        weights = weights_after_one_step(
            LAYERS[name], True, dropout=0.5, recurrent_dropout=0.5
        )
        assert all(np.all(np.isfinite(w)) for w in weights)

elif REMAT:

    def test_remat_scope_fails_for_keras_conv_lstm2d_on_this_backend_too():
        assert keras_conv_lstm2d_fails_under_remat_scope()
