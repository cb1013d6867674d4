"""The fused recurrence computes what Keras's time loop computes.

`ConvRNN.uses_fused_recurrence` picks, from what the layer can see, between
Keras's time loop (the cells' `recurrent_step`, differentiated by the
backend) and `keras_convgru._fused` (its own backward pass). Here both
paths run on the same weights and inputs, on every backend, and their
outputs, final states and the gradients of a loss with respect to the
inputs, the initial states and every weight are compared (1e-5, relative to
the largest entry). The loop path is itself checked against a NumPy
reference, Keras's own ConvLSTM and finite differences elsewhere;
test_gradcheck.py checks the fused path's gradients against finite
differences directly.
"""

import re

import keras
import numpy as np
import pytest
from helpers import LAYERS as TABLE
from helpers import assert_close
from helpers import backend_functions
from keras import ops

import keras_convgru as kc

# "lstm2d": (kc.ConvLSTM2D, 2), ...: the families the fused path computes.
LAYERS = {
    f"{family}{rank}d": (TABLE[family, rank], rank) for family, rank in TABLE
}

# (layer, options, time steps): every argument the fused path handles.
CASES = {
    "lstm2d": ("lstm2d", {}, 4),
    "gru2d": ("gru2d", {}, 4),
    "lstm1d": ("lstm1d", {}, 5),
    "gru1d": ("gru1d", {}, 5),
    "lstm3d": ("lstm3d", {}, 3),
    "gru3d": ("gru3d", {}, 3),
    "lstm2d-channels_first": ("lstm2d", {"data_format": "channels_first"}, 4),
    "gru2d-channels_first-even-kernel": (
        "gru2d",
        {"data_format": "channels_first", "kernel_size": (2, 3)},
        4,
    ),
    "lstm2d-even-kernel": ("lstm2d", {"kernel_size": (4, 2)}, 4),
    "gru2d-valid-strides": ("gru2d", {"padding": "valid", "strides": 2}, 3),
    "lstm2d-dilation": ("lstm2d", {"dilation_rate": 2}, 3),
    "gru2d-go_backwards": ("gru2d", {"go_backwards": True}, 4),
    "lstm2d-last-output": ("lstm2d", {"return_sequences": False}, 4),
    "gru2d-no-bias": ("gru2d", {"use_bias": False}, 4),
    "lstm2d-no-bias-no-forget-bias": (
        "lstm2d",
        {"use_bias": False, "unit_forget_bias": False},
        4,
    ),
    "lstm2d-one-step": ("lstm2d", {}, 1),
    "gru2d-one-step": ("gru2d", {}, 1),
    "gru2d-dropout": ("gru2d", {"dropout": 0.3, "recurrent_dropout": 0.4}, 4),
    "lstm2d-dropout": (
        "lstm2d",
        {"dropout": 0.2, "recurrent_dropout": 0.3},
        4,
    ),
    "gru2d-regularized-constrained": (
        "gru2d",
        {"kernel_regularizer": "l2", "recurrent_constraint": "max_norm"},
        3,
    ),
}


def build_pair(name, rng):
    """The same layer twice (same weights, same seed), one per path."""
    key, options, steps = CASES[name]
    layer_class, rank = LAYERS[key]
    options = dict(options)
    kernel_size = options.pop("kernel_size", 3)
    options.setdefault("padding", "same")
    options.setdefault("return_sequences", True)
    channels, filters, side = 3, 4, 6 if rank < 3 else 4
    spatial = (side + 1,) + (side,) * (rank - 1)
    if options.get("data_format") == "channels_first":
        frame = (channels, *spatial)
    else:
        frame = (*spatial, channels)
    shape = (2, steps, *frame)
    layers = []
    for fused in (True, False):
        layer = layer_class(
            filters, kernel_size, return_state=True, seed=7, **options
        )
        layer.build(shape)
        layer.fuse_recurrence = fused
        layers.append(layer)
    for weight in layers[0].weights:
        weight.assign(0.4 * rng.standard_normal(weight.shape))
    for a, b in zip(layers[0].weights, layers[1].weights):
        b.assign(a.value)
    x = rng.uniform(-1, 1, size=shape).astype("float32")
    return layers, x


def outputs_and_gradients(layer, x, states, rng_seed):
    """The layer's outputs and the gradients of a fixed random linear loss
    of all of them with respect to the inputs, the initial states (when
    given) and every weight, in training mode."""
    weights = [w.value for w in layer.trainable_weights]
    non_trainable = [v.value for v in layer.non_trainable_variables]
    count = len(states)

    def run(*arrays):
        arrays = [ops.convert_to_tensor(a) for a in arrays]
        x, given, trainable = (
            arrays[0],
            list(arrays[1 : 1 + count]),
            list(arrays[1 + count :]),
        )
        outputs, _ = layer.stateless_call(
            trainable,
            non_trainable,
            x,
            initial_state=given or None,
            training=True,
        )
        return outputs

    probe = np.random.default_rng(rng_seed)
    shapes = [tuple(o.shape) for o in run(x, *states, *weights)]
    projections = [probe.standard_normal(s).astype("float32") for s in shapes]

    def loss(*arrays):
        return sum(
            ops.sum(o * ops.convert_to_tensor(p))
            for o, p in zip(run(*arrays), projections)
        )

    arrays = [x, *states, *[ops.convert_to_numpy(w) for w in weights]]
    _, gradients = backend_functions(loss, arrays)
    outputs = [ops.convert_to_numpy(o) for o in run(*arrays)]
    return outputs, gradients(arrays)


def assert_relatively_close(actual, expected, what):
    assert_close(
        actual, expected, atol=1e-5, rtol=1e-5, relative=True, err_msg=what
    )


@pytest.mark.parametrize("with_states", [False, True])
@pytest.mark.parametrize("name", list(CASES))
def test_fused_recurrence_equals_the_time_loop(name, with_states, rng):
    (fused, stepped), x = build_pair(name, rng)
    assert fused.uses_fused_recurrence(x.shape)
    assert not stepped.uses_fused_recurrence(x.shape)
    states = []
    if with_states:
        # Nonzero initial states: the first step's state-to-state
        # convolution and the gradients into the states.
        states = [
            rng.uniform(-0.5, 0.5, size=s.shape).astype("float32")
            for s in fused.get_initial_state(x.shape[0])
        ]
    expected = outputs_and_gradients(stepped, x, states, 3)
    actual = outputs_and_gradients(fused, x, states, 3)
    names = ["inputs", *[f"initial_state[{i}]" for i in range(len(states))]]
    names += [w.path for w in fused.trainable_weights]
    for i, (a, e) in enumerate(zip(actual[0], expected[0])):
        assert a.shape == e.shape
        assert_relatively_close(a, e, f"{name}: output {i}")
    assert len(actual[1]) == len(expected[1]) == len(names)
    for what, a, e in zip(names, actual[1], expected[1]):
        assert a.shape == e.shape, what
        assert_relatively_close(a, e, f"{name}: gradient of {what}")


def test_stateful_fused_layer_carries_its_states_like_the_loop(rng):
    shape = (2, 3, 6, 6, 3)
    x = [rng.uniform(-1, 1, size=shape).astype("float32") for _ in range(3)]
    results = []
    for fused in (True, False):
        layer = kc.ConvLSTM2D(
            4, 3, padding="same", stateful=True, return_state=True
        )
        layer.fuse_recurrence = fused
        layer.build(shape)
        if fused:
            weights = [w.numpy() for w in layer.weights]
        else:
            for w, value in zip(layer.weights, weights):
                w.assign(value)
        results.append([ops.convert_to_numpy(layer(s)[2]) for s in x])
    for a, e in zip(*results):
        assert_relatively_close(a, e, "held cell state")


@pytest.mark.parametrize("name", ["lstm2d", "gru2d", "lstm1d", "gru3d"])
def test_fused_recurrence_of_an_empty_batch_is_empty(name):
    """A batch of 0 sequences gives empty outputs and states shaped as
    the loop's (the time-major projection's reshape must not infer the
    batch from 0 elements). Shapes written out: 5-pixel frames, 'same',
    3 filters, 4 steps."""
    layer_class, rank = LAYERS[name]
    x = np.zeros((0, 4, *(5,) * rank, 2), "float32")
    state_shape = (0, *(5,) * rank, 3)
    expected = [(0, 4, *state_shape[1:])] + [state_shape] * (
        2 if name.startswith("lstm") else 1
    )
    for fused in (True, False):
        layer = layer_class(
            3, 3, padding="same", return_sequences=True, return_state=True
        )
        layer.fuse_recurrence = fused
        assert layer.uses_fused_recurrence(x.shape) is fused
        outputs = [ops.convert_to_numpy(o) for o in layer(x)]
        assert [o.shape for o in outputs] == expected, fused


def test_fused_layer_trains_in_fit(rng):
    """`fit` compiles the fused path (jit on JAX and TensorFlow's graph)
    and moves the weights as the loop does."""
    shape = (4, 3, 6, 6, 2)
    x = rng.uniform(-1, 1, size=shape).astype("float32")
    y = rng.uniform(-1, 1, size=(4, 3, 6, 6, 3)).astype("float32")
    trained = []
    for fused in (True, False):
        keras.utils.set_random_seed(1)
        layer = kc.ConvGRU2D(3, 3, padding="same", return_sequences=True)
        layer.fuse_recurrence = fused
        model = keras.Sequential([keras.Input(shape[1:]), layer])
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        model.fit(x, y, batch_size=2, epochs=2, verbose=0, shuffle=False)
        trained.append([w.numpy() for w in model.weights])
    for a, e in zip(*trained):
        assert_relatively_close(a, e, "weights after fit")


def stepped_cases(fuse_recurrence="auto"):
    """Layers that the fused path does not compute, and why."""
    gru, lstm = kc.ConvGRU2D, kc.ConvLSTM2D
    fuse = {"fuse_recurrence": fuse_recurrence}
    cells = [kc.ConvGRU2DCell(2, 3), kc.ConvGRU2DCell(2, 3)]
    return {
        "peepholes": (
            lambda: lstm(2, 3, peepholes="channel", **fuse),
            "peepholes='channel'",
        ),
        "normalization": (
            lambda: gru(2, 3, normalization="layer", **fuse),
            "normalization='layer'",
        ),
        "reset_before": (
            lambda: gru(2, 3, reset_after=False, **fuse),
            "reset_after=False",
        ),
        "activation": (
            lambda: gru(2, 3, activation="relu", **fuse),
            "`activation` is not 'tanh'",
        ),
        "recurrent_activation": (
            lambda: lstm(2, 3, recurrent_activation="hard_sigmoid", **fuse),
            "`recurrent_activation` is not 'sigmoid'",
        ),
        "unroll": (lambda: gru(2, 3, unroll=True, **fuse), "unroll=True"),
        "mixed_float16": (
            lambda: gru(2, 3, dtype="mixed_float16", **fuse),
            "compute dtype is float16",
        ),
        "stack": (lambda: kc.ConvRNN(cells, **fuse), "2 cells"),
        "traj_gru": (
            lambda: kc.TrajGRU2D(2, 3, **fuse),
            "not TrajGRU2DCell",
        ),
    }


@pytest.mark.parametrize("name", list(stepped_cases()))
def test_what_the_fused_path_does_not_cover_takes_the_loop(name):
    make, _ = stepped_cases()[name]
    assert not make().uses_fused_recurrence((2, 3, 8, 8, 1))


@pytest.mark.parametrize("name", list(stepped_cases()))
def test_fuse_recurrence_true_says_why_it_cannot_fuse(name):
    make, reason = stepped_cases(True)[name]
    with pytest.raises(ValueError, match=re.escape(reason)):
        make()


@pytest.mark.parametrize("cell_class", [kc.ConvGRU2DCell, kc.ConvLSTM2DCell])
def test_a_cell_with_its_own_step_keeps_it(cell_class):
    """A subclass that overrides `recurrent_step` is stepped by its own
    step (the fused recurrence would compute the family's step instead),
    and `fuse_recurrence=True` says so: here a counter, h_t = h_(t-1) + 1
    from zeros."""

    class Counter(cell_class):
        def recurrent_step(
            self, projection, states, recurrent_dropout_mask=None
        ):
            states = [state + 1.0 for state in states]
            return states[0], states

    layer = kc.ConvRNN(Counter(2, 3, padding="same"), return_sequences=True)
    x = np.zeros((2, 4, 5, 5, 1), "float32")
    assert not layer.uses_fused_recurrence(x.shape)
    out = ops.convert_to_numpy(layer(x))
    expected = np.broadcast_to(
        np.arange(1, 5, dtype="float32")[None, :, None, None, None], out.shape
    )
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(ValueError, match="overrides `recurrent_step`"):
        kc.ConvRNN(Counter(2, 3), fuse_recurrence=True)


def test_unknown_time_steps_and_masks_take_the_loop(rng):
    layer = kc.ConvGRU2D(2, 3, padding="same", return_sequences=True)
    layer.fuse_recurrence = True
    with pytest.raises(ValueError, match="number of time steps is unknown"):
        layer.uses_fused_recurrence((2, None, 8, 8, 1))
    assert layer.uses_fused_recurrence((2, 3, 8, 8, 1))
    x = rng.uniform(-1, 1, size=(2, 3, 8, 8, 1)).astype("float32")
    mask = np.array([[True, False, True], [True, True, True]])
    with pytest.raises(ValueError, match="a mask is given"):
        layer(x, mask=mask)
    # With "auto", a mask takes the loop: masked steps carry the state.
    layer.fuse_recurrence = "auto"
    assert not layer.uses_fused_recurrence(x.shape, mask=mask)
    out = ops.convert_to_numpy(layer(x, mask=mask))
    np.testing.assert_array_equal(out[0, 1], out[0, 0])


def test_auto_fuses_on_jax_cpu_only():
    """The default follows what was measured (docs/performance.md): JAX on
    a CPU fuses; TensorFlow and PyTorch step through Keras's loop."""
    layer = kc.ConvLSTM2D(2, 3, padding="same")
    assert layer.fuse_recurrence == "auto"
    expected = False
    if keras.backend.backend() == "jax":
        device = str(keras.distribution.list_devices()[0]).lower()
        expected = device.startswith("cpu")
    assert layer.uses_fused_recurrence((2, 3, 8, 8, 1)) == expected


@pytest.mark.parametrize("value", ["yes", 1, None, "True"])
def test_fuse_recurrence_rejects_other_values(value):
    match = re.escape(f"fuse_recurrence={value!r}")
    with pytest.raises(ValueError, match=match):
        kc.ConvGRU2D(2, 3, fuse_recurrence=value)
    layer = kc.ConvGRU2D(2, 3)
    layer.fuse_recurrence = value
    with pytest.raises(ValueError, match=match):
        layer.uses_fused_recurrence((2, 3, 8, 8, 1))


@pytest.mark.parametrize("value", [True, False, "auto"])
def test_fuse_recurrence_is_in_the_config(value):
    for layer in (
        kc.ConvGRU2D(2, 3, fuse_recurrence=value),
        kc.ConvRNN(kc.ConvLSTM2DCell(2, 3), fuse_recurrence=value),
    ):
        config = layer.get_config()
        assert config["fuse_recurrence"] == value
        assert type(layer).from_config(config).fuse_recurrence == value
