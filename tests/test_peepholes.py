"""ConvLSTM peepholes (Shi et al. 2015), as docs/api/conv_lstm.md states.

The peephole terms themselves are checked against the NumPy reference for
any arguments in tests/test_properties.py; here: zero peephole weights
give exactly Keras's `ConvLSTM2D`, the time index of the peepholes on a
step computed by hand, the weight's shape, the frame-size rules of
`"full"` and `"channel"`, and the errors.
"""

import keras
import numpy as np
import pytest
from keras import ops

import keras_convgru as kc


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@pytest.mark.parametrize("peepholes", ["channel", "full"])
def test_zero_peephole_weights_give_exactly_keras_conv_lstm(peepholes, rng):
    x = rng.normal(size=(2, 4, 6, 5, 3)).astype("float32")
    ours = kc.ConvLSTM2D(
        4, 3, padding="same", return_sequences=True, peepholes=peepholes
    )
    theirs = keras.layers.ConvLSTM2D(
        4, 3, padding="same", return_sequences=True
    )
    ours.build(x.shape)
    theirs.build(x.shape)
    weights = [rng.normal(scale=0.3, size=w.shape) for w in theirs.weights]
    theirs.set_weights(weights)
    # The default initializer is "zeros": the peephole kernel is left so.
    ours.set_weights(
        weights + [ops.convert_to_numpy(ours.cell.peephole_kernel)]
    )
    assert not np.any(ops.convert_to_numpy(ours.cell.peephole_kernel))
    np.testing.assert_allclose(
        ops.convert_to_numpy(ours(x)),
        ops.convert_to_numpy(theirs(x)),
        atol=1e-6,
    )


def test_plain_layer_has_keras_conv_lstm_weights():
    ours = kc.ConvLSTM2D(4, 3)
    theirs = keras.layers.ConvLSTM2D(4, 3)
    ours.build((None, 3, 8, 8, 2))
    theirs.build((None, 3, 8, 8, 2))
    assert [(w.name, tuple(w.shape)) for w in ours.weights] == [
        (w.name, tuple(w.shape)) for w in theirs.weights
    ]
    assert ours.cell.peephole_kernel is None


@pytest.mark.parametrize("peepholes", ["channel", "full"])
def test_input_and_forget_gates_see_the_old_cell_state_output_gate_the_new(
    peepholes,
):
    # Zero kernels, and a bias on the candidate only: one step from
    # (h, c) is, by the documented equations,
    #   i = σ(wci c), f = σ(wcf c), c' = f c + i tanh(bc),
    #   o = σ(wco c'), h' = o tanh(c').
    c0 = np.array([[[0.9, -1.5], [2.0, 0.4]]], "float32")  # (1, 2, 2)
    w = np.array([[1.5, -0.5], [0.75, 2.0], [-2.5, 1.25]], "float32")
    b_c = np.array([0.5, -0.25], "float32")
    layer = kc.ConvLSTM1D(
        2,
        1,
        return_state=True,
        peepholes=peepholes,
        kernel_initializer="zeros",
        recurrent_initializer="zeros",
        unit_forget_bias=False,
    )
    x = np.ones((1, 1, 2, 3), "float32")
    layer.build(x.shape)
    kernel = w if peepholes == "channel" else np.stack([w] * 2, axis=1)
    layer.cell.peephole_kernel.assign(kernel)
    layer.cell.bias.assign(np.concatenate([np.zeros(4), b_c, np.zeros(2)]))
    h0 = np.zeros_like(c0)
    _, h, c = layer(x, initial_state=[h0, c0])
    w_ci, w_cf, w_co = w
    c_expected = sigmoid(w_cf * c0) * c0 + sigmoid(w_ci * c0) * np.tanh(b_c)
    h_expected = sigmoid(w_co * c_expected) * np.tanh(c_expected)
    np.testing.assert_allclose(ops.convert_to_numpy(c), c_expected, rtol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(h), h_expected, rtol=1e-6)
    # `o` through the old state would give another output.
    h_old_state = sigmoid(w_co * c0) * np.tanh(c_expected)
    assert np.max(np.abs(h_expected - h_old_state)) > 0.05


@pytest.mark.parametrize(
    "data_format,shape",
    [("channels_last", (3, 3, 2, 4)), ("channels_first", (3, 4, 3, 2))],
)
def test_full_peephole_kernel_has_one_weight_per_state_pixel(
    data_format, shape
):
    # 8 x 5 frames, a 3 x 2 kernel, strides 2, "valid": a 3 x 2 state.
    layer = kc.ConvLSTM2D(
        4, (3, 2), strides=2, data_format=data_format, peepholes="full"
    )
    input_shape = (None, 2, 8, 5, 1)
    if data_format == "channels_first":
        input_shape = (None, 2, 1, 8, 5)
    layer.build(input_shape)
    assert layer.weights[-1].name == "peephole_kernel"
    assert tuple(layer.cell.peephole_kernel.shape) == shape
    channel = kc.ConvLSTM2D(4, 3, peepholes="channel")
    channel.build((None, 2, 8, 5, 1))
    assert tuple(channel.cell.peephole_kernel.shape) == (3, 4)


def test_full_peepholes_with_unknown_frame_sizes_raise_naming_peepholes():
    inputs = keras.Input((None, None, 7, 2))
    with pytest.raises(ValueError, match=r"peepholes='full'.*\(None, 5\)"):
        kc.ConvLSTM2D(3, 3, peepholes="full")(inputs)


def test_full_peepholes_refuse_frames_of_another_size(rng):
    layer = kc.ConvLSTM2D(2, 3, padding="same", peepholes="full")
    layer(rng.normal(size=(1, 2, 6, 6, 1)).astype("float32"))
    with pytest.raises(ValueError, match="peepholes='full'"):
        layer(rng.normal(size=(1, 2, 5, 6, 1)).astype("float32"))


def test_channel_peepholes_run_on_frames_of_any_size(rng):
    inputs = keras.Input((None, None, None, 2))
    outputs = kc.ConvLSTM2D(
        3,
        3,
        padding="same",
        peepholes="channel",
        peephole_initializer="ones",
    )(inputs)
    model = keras.Model(inputs, outputs)
    for side in (4, 7):
        x = rng.normal(size=(2, 3, side, side + 1, 2)).astype("float32")
        assert tuple(model(x).shape) == (2, side, side + 1, 3)


@pytest.mark.parametrize("value", ["diagonal", "Full", True, 1])
def test_unknown_peepholes_value_raises_naming_it(value):
    with pytest.raises(ValueError, match=rf"peepholes={value!r}"):
        kc.ConvLSTM2D(2, 3, peepholes=value)


def test_peephole_regularizer_and_constraint_apply_to_the_peephole_kernel(rng):
    layer = kc.ConvLSTM1D(
        2,
        3,
        peepholes="channel",
        peephole_initializer=keras.initializers.RandomNormal(seed=1),
        peephole_regularizer=keras.regularizers.L2(0.5),
        peephole_constraint=keras.constraints.NonNeg(),
    )
    layer(rng.normal(size=(1, 2, 5, 1)).astype("float32"))
    kernel = ops.convert_to_numpy(layer.cell.peephole_kernel)
    assert len(layer.losses) == 1
    np.testing.assert_allclose(
        float(layer.losses[0]), 0.5 * np.sum(kernel**2), rtol=1e-6
    )
    constrained = layer.cell.peephole_constraint(ops.convert_to_tensor(kernel))
    np.testing.assert_array_equal(
        ops.convert_to_numpy(constrained), np.maximum(kernel, 0)
    )
