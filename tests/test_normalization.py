"""Normalization inside the ConvGRU and ConvLSTM cells (`normalization=`).

The normalized equations are checked against the NumPy reference for any
arguments in tests/test_properties.py and by finite differences in
tests/test_gradcheck.py; here: the weights the API reference documents,
the invariance that normalizing the input projection buys, the hoisted
input projection (normalized frame by frame), and the errors.
"""

import keras
import numpy as np
import pytest
from helpers import LAYERS
from helpers import contract_weight_shapes
from helpers import norm_blocks
from keras import ops

import keras_convgru as kc

FAMILIES = [("gru", True), ("gru", False), ("lstm", True)]
IDS = ["gru-reset_after", "gru-reset_before", "lstm"]


def make(family, reset_after, **options):
    if family == "gru":
        options["reset_after"] = reset_after
    return LAYERS[(family, 2)](**options)


@pytest.mark.parametrize("family,reset_after", FAMILIES, ids=IDS)
@pytest.mark.parametrize("normalization", ["layer", "group"])
def test_weights_are_the_documented_gamma_beta_pairs_after_the_plain_ones(
    family, reset_after, normalization
):
    layer = make(
        family,
        reset_after,
        filters=4,
        kernel_size=3,
        normalization=normalization,
        norm_groups=2,
    )
    layer.build((None, 3, 8, 8, 2))
    expected_shapes = contract_weight_shapes(
        family, (3, 3), 2, 4, reset_after=reset_after, normalization="layer"
    )
    assert [tuple(w.shape) for w in layer.weights] == expected_shapes
    names = [w.path.split("/", 2)[-1] for w in layer.weights]
    plain = ["kernel", "recurrent_kernel", "bias"]
    norms = [
        f"{term}/{weight}"
        for term, _ in norm_blocks(family, reset_after)
        for weight in ("gamma", "beta")
    ]
    assert names == plain + norms


@pytest.mark.parametrize("family,reset_after", FAMILIES, ids=IDS)
def test_scaled_frames_leave_a_layer_normalized_layer_nearly_unchanged(
    family, reset_after, rng
):
    # The input projection W * x is normalized: W * (a x) = a (W * x) has
    # the same normalization, up to the epsilon. Without biases nothing
    # else sees the scale. Without normalization the outputs move.
    x = rng.normal(size=(2, 4, 6, 6, 3)).astype("float32")
    outputs = {}
    for normalization in ("layer", None):
        layer = make(
            family,
            reset_after,
            filters=3,
            kernel_size=3,
            padding="same",
            use_bias=False,
            normalization=normalization,
            return_sequences=True,
        )
        layer.build(x.shape)
        for weight in layer.weights:
            if weight.name != "gamma" and weight.name != "beta":
                weight.assign(rng.normal(scale=0.5, size=weight.shape))
        outputs[normalization] = [
            ops.convert_to_numpy(layer(scale * x)) for scale in (1.0, 8.0)
        ]
    normalized, plain = outputs["layer"], outputs[None]
    np.testing.assert_allclose(normalized[1], normalized[0], atol=5e-3)
    assert np.max(np.abs(plain[1] - plain[0])) > 0.1


# The input projection and its normalization are the same code for both
# `reset_after`.
@pytest.mark.parametrize(
    "family,reset_after", [("gru", True), ("lstm", True)], ids=["gru", "lstm"]
)
def test_hoisted_input_projection_is_normalized_frame_by_frame(
    family, reset_after, rng
):
    # One sample's frames differ in scale, so a statistic over the time
    # axis (or the batch) would differ from the per-frame one.
    x = rng.normal(size=(2, 5, 4, 4, 2)).astype("float32")
    x *= np.array([0.1, 1.0, 10.0, 3.0, 0.5], "float32")[
        None, :, None, None, None
    ]
    options = dict(
        filters=2,
        kernel_size=3,
        padding="same",
        normalization="group",
        norm_groups=2,
        return_sequences=True,
    )
    hoisted = make(family, reset_after, **options)
    looped = make(family, reset_after, **options)
    looped.max_hoisted_step_elements = 0
    hoisted.build(x.shape)
    looped.build(x.shape)
    assert hoisted.hoists_input_projection(x.shape)
    assert not looped.hoists_input_projection(x.shape)
    weights = [rng.normal(scale=0.5, size=w.shape) for w in hoisted.weights]
    hoisted.set_weights(weights)
    looped.set_weights(weights)
    np.testing.assert_allclose(
        ops.convert_to_numpy(hoisted(x)),
        ops.convert_to_numpy(looped(x)),
        atol=1e-5,
    )


@pytest.mark.parametrize("cls", [kc.ConvGRU2D, kc.ConvLSTM2D, kc.ConvGRUCell])
@pytest.mark.parametrize("value", ["batch", "Layer", "instance", True])
def test_unknown_normalization_value_raises_naming_it(cls, value):
    arguments = {"rank": 2} if cls is kc.ConvGRUCell else {}
    with pytest.raises(ValueError, match=rf"normalization={value!r}"):
        cls(filters=4, kernel_size=3, normalization=value, **arguments)


@pytest.mark.parametrize("cls", [kc.ConvGRU1D, kc.ConvLSTM3DCell])
def test_norm_groups_that_do_not_divide_filters_raise_naming_both(cls):
    with pytest.raises(ValueError, match=r"norm_groups=3 and filters=4"):
        cls(4, 3, normalization="group", norm_groups=3)
    with pytest.raises(ValueError, match=r"norm_groups=0"):
        cls(4, 3, normalization="group", norm_groups=0)
    with pytest.raises(ValueError, match=r"norm_epsilon=-1"):
        cls(4, 3, normalization="layer", norm_epsilon=-1)


def test_layer_normalization_equals_keras_group_normalization_of_one_group(
    rng,
):
    # One ConvLSTM step from zero states with zero recurrent kernel and
    # biases: U * h = 0 normalizes to the recurrent beta (0), and with
    # i, f, o from the normalized input projection only,
    # c' = σ(LN(Wi * x)) tanh(LN(Wc * x)), h' = σ(LN(Wo * x)) tanh(LN(c')).
    x = rng.normal(size=(2, 1, 5, 5, 3)).astype("float32")
    layer = kc.ConvLSTM2D(
        2,
        3,
        padding="same",
        normalization="layer",
        recurrent_initializer="zeros",
        unit_forget_bias=False,
        return_state=True,
    )
    layer.build(x.shape)
    kernel = rng.normal(size=layer.cell.kernel.shape).astype("float32")
    layer.cell.kernel.assign(kernel)
    gamma = 1 + rng.normal(scale=0.3, size=8).astype("float32")
    beta = rng.normal(scale=0.3, size=8).astype("float32")
    layer.cell.input_norm.gamma.assign(gamma)
    layer.cell.input_norm.beta.assign(beta)
    _, h, c = layer(x)

    conv = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)
    conv.build((None, 5, 5, 3))
    conv.set_weights([kernel])
    projection = conv(x[:, 0])
    gates = []
    for g in range(4):
        norm = keras.layers.LayerNormalization(axis=(1, 2, 3), epsilon=1e-3)
        norm.build((None, 5, 5, 2))
        norm.gamma.assign(np.broadcast_to(gamma[2 * g : 2 * g + 2], (5, 5, 2)))
        norm.beta.assign(np.broadcast_to(beta[2 * g : 2 * g + 2], (5, 5, 2)))
        gates.append(
            ops.convert_to_numpy(norm(projection[..., 2 * g : 2 * g + 2]))
        )
    i, _, candidate, o = gates
    c_expected = 1 / (1 + np.exp(-i)) * np.tanh(candidate)
    cell_norm = keras.layers.LayerNormalization(axis=(1, 2, 3), epsilon=1e-3)
    c_normalized = ops.convert_to_numpy(cell_norm(c_expected))
    h_expected = 1 / (1 + np.exp(-o)) * np.tanh(c_normalized)
    np.testing.assert_allclose(ops.convert_to_numpy(c), c_expected, atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(h), h_expected, atol=1e-5)
