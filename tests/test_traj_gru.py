"""TrajGRU2DCell and TrajGRU2D against independent oracles.

* The step and whole sequences against the NumPy reference
  (`tests/reference_traj.py`, bilinear sampling written out point by
  point) at 1e-4 in float32: zero, integer and fractional flows, flows
  that vary over the frame and flows that point outside it, one and
  several links, both data formats, with and without biases.
* Integer flows are exact shifts (compared with NumPy slicing, bit for
  bit).
* Zero flow weights make every link the identity warp: the cell is then
  a ConvGRU whose state-to-state kernel is `U_0 + ... + U_{L-1}` (checked
  against `kc.ConvGRU2D`, itself checked against Keras's GRU elsewhere).
* Layer behaviour as `ConvGRU2D`'s: return structures, masks,
  `go_backwards`, `initial_state`, `stateful`, unknown frame sizes, stacks
  with ConvGRU and ConvLSTM cells, dropout, mixed precision, training,
  empty batches, the arguments and their errors.

What every family is tested for runs TrajGRU from the Family table of
tests/helpers.py: configs and `.keras` files (test_serialization.py),
the same numbers and files on every backend and SavedModel export
(test_portability.py), gradients against finite differences
(test_gradcheck.py), the hoisted input projection (test_hoisting.py).
"""

import re

import keras
import numpy as np
import pytest
import reference
import reference_traj
from helpers import FAMILIES
from helpers import FLOW_KINDS
from helpers import TRAJ_GRU_BIASES
from helpers import TRAJ_GRU_WEIGHT_NAMES
from helpers import set_weights_by_name
from helpers import traj_gru_weight_shapes
from helpers import traj_gru_weights
from keras import ops

import keras_convgru as kc
from keras_convgru.traj_gru import _bilinear_warp

ATOL = 1e-4
BATCH, TIME, ROWS, COLS, CHANNELS = 2, 3, 6, 5, 2
# The sizes of `traj_gru_weights` (its defaults).
FILTERS, FLOW_FILTERS = 3, 4
WEIGHT_NAMES = TRAJ_GRU_WEIGHT_NAMES
BIASES = TRAJ_GRU_BIASES
# Batch 0 skips step 1; batch 1 skips its first step.
MASK = np.array([[1, 0, 1], [0, 1, 1]], dtype=bool)


def small_layer_options(**options):
    """The Family table's small TrajGRU (zero initial weights: every test
    sets its own), with `options`."""
    return {**FAMILIES["traj_gru"].options, **options}


def to_channels_first(x, channel_axis_after):
    """Moves the last axis to position `channel_axis_after`."""
    return np.moveaxis(x, -1, channel_axis_after)


def numpy(x):
    return ops.convert_to_numpy(x)


# --------------------------------------------------------------------------
# Bilinear warping
# --------------------------------------------------------------------------


@pytest.mark.parametrize("links", [1, 3])
@pytest.mark.parametrize("kind", ["integer", "fractional", "outside", "mixed"])
def test_warp_matches_the_pointwise_bilinear_reference(kind, links):
    rng = np.random.default_rng(3)
    state = rng.normal(size=(BATCH, ROWS, COLS, FILTERS))
    size = (BATCH, ROWS, COLS, 2 * links)
    flows = {
        "integer": rng.integers(-3, 4, size=size).astype(float),
        "fractional": rng.uniform(-1.5, 1.5, size=size),
        # Far out, just out and exactly on the edges of the frame.
        "outside": rng.choice([-40.0, -6.5, -1.0, 5.0, 5.7, 30.25], size),
        "mixed": rng.uniform(-8.0, 8.0, size=size),
    }[kind]
    expected = reference_traj.warp(state, flows)
    actual = _bilinear_warp(
        ops.convert_to_tensor(state, "float32"),
        ops.convert_to_tensor(flows, "float32"),
        links,
    )
    assert tuple(actual.shape) == expected.shape
    np.testing.assert_allclose(numpy(actual), expected, atol=1e-5)
    if kind == "outside":
        assert np.any(expected == 0) and np.any(expected != 0)


def shifted(state, dy, dx):
    """`out[y, x] = state[y + dy, x + dx]`, zero outside (NumPy slicing)."""
    out = np.zeros_like(state)
    rows, cols = state.shape[1:3]
    ys = slice(max(0, -dy), min(rows, rows - dy))
    xs = slice(max(0, -dx), min(cols, cols - dx))
    ys_from = slice(ys.start + dy, ys.stop + dy)
    xs_from = slice(xs.start + dx, xs.stop + dx)
    out[:, ys, xs] = state[:, ys_from, xs_from]
    return out


def test_integer_flows_are_exact_shifts():
    rng = np.random.default_rng(4)
    state = rng.normal(size=(BATCH, ROWS, COLS, FILTERS)).astype("float32")
    shifts = [(0, 0), (1, 0), (0, -2), (-3, 2), (6, 0), (2, 1)]
    flows = np.zeros((BATCH, ROWS, COLS, 2 * len(shifts)), "float32")
    for link, (dy, dx) in enumerate(shifts):
        flows[..., 2 * link] = dy
        flows[..., 2 * link + 1] = dx
    warped = numpy(_bilinear_warp(state, flows, len(shifts)))
    for link, (dy, dx) in enumerate(shifts):
        block = warped[..., link * FILTERS : (link + 1) * FILTERS]
        np.testing.assert_array_equal(block, shifted(state, dy, dx))


# --------------------------------------------------------------------------
# The step
# --------------------------------------------------------------------------


def test_weights_have_the_contract_names_and_shapes():
    cell = kc.TrajGRU2DCell(
        FILTERS,
        (3, 1),
        **small_layer_options(links=4, flow_filters=5, flow_kernel_size=3),
    )
    cell.build((None, None, None, CHANNELS))
    shapes = traj_gru_weight_shapes(CHANNELS, FILTERS, 4, 5, k=3, fk=3)
    shapes["kernel"] = (3, 1, CHANNELS, 3 * FILTERS)
    assert {v.name: tuple(v.shape) for v in cell.weights} == shapes
    assert cell.projection_channels == 3 * FILTERS + 5
    no_bias = kc.TrajGRU2DCell(
        FILTERS, 3, use_bias=False, **small_layer_options()
    )
    no_bias.build((None, 4, 4, CHANNELS))
    assert [v.name for v in no_bias.weights] == [
        n for n in WEIGHT_NAMES if n not in BIASES
    ]


def test_default_flow_weights_start_as_the_identity_warp():
    cell = kc.TrajGRU2DCell(FILTERS, 3, recurrent_initializer="zeros")
    assert (cell.links, cell.flow_filters) == (5, 32)
    assert cell.flow_kernel_size == (5, 5)
    assert cell.flow_activation is keras.activations.leaky_relu
    assert isinstance(cell.recurrent_initializer, keras.initializers.Zeros)
    assert isinstance(
        kc.TrajGRU2DCell(FILTERS, 3).recurrent_initializer,
        keras.initializers.Orthogonal,
    )
    cell.build((None, ROWS, COLS, CHANNELS))
    weights = {v.name: numpy(v) for v in cell.weights}
    assert not np.any(weights["flow_kernel"])
    assert not np.any(weights["flow_output_bias"])
    # The flow generator's input kernel is random, so f is not zero and
    # the flow kernel gets a gradient from the first step.
    assert np.any(weights["flow_input_kernel"])


STEP_CASES = [
    pytest.param(kind, links, "channels_last", True, id=f"{kind}-links{links}")
    for kind in FLOW_KINDS
    for links in (1, 3)
] + [
    pytest.param("field", 3, "channels_first", True, id="field-channels_first"),
    pytest.param("outside", 2, "channels_first", True, id="out-channels_first"),
    pytest.param("field", 2, "channels_last", False, id="field-no-bias"),
]


@pytest.mark.parametrize("kind,links,data_format,use_bias", STEP_CASES)
def test_step_matches_numpy_reference(kind, links, data_format, use_bias):
    rng = np.random.default_rng(5)
    weights = traj_gru_weights(rng, links, kind, use_bias)
    x = rng.uniform(-1, 1, size=(BATCH, ROWS, COLS, CHANNELS))
    h = rng.uniform(-1, 1, size=(BATCH, ROWS, COLS, FILTERS))
    flows = reference_traj.flows_of(
        x, h, {**dict.fromkeys(BIASES, 0.0), **weights}
    )
    if kind == "field":
        # The case covers what its name says: varying fractional flows,
        # some of them leaving the frame.
        assert np.std(flows) > 0.5 and np.any(flows != np.round(flows))
        rows = np.arange(ROWS)[:, None, None] + flows[..., 0::2]
        assert np.any(rows < 0) or np.any(rows > ROWS - 1)
    expected = reference_traj.traj_gru_step(x, h, weights)

    cell = kc.TrajGRU2DCell(
        FILTERS,
        3,
        data_format=data_format,
        use_bias=use_bias,
        **small_layer_options(links=links),
    )
    if data_format == "channels_first":
        x, h = to_channels_first(x, 1), to_channels_first(h, 1)
    cell.build(x.shape)
    set_weights_by_name(cell, weights)
    x, h = (ops.convert_to_tensor(a, "float32") for a in (x, h))
    projection = cell.input_projection(x)
    output, (new_h,) = cell.recurrent_step(projection, [h])
    output, new_h = numpy(output), numpy(new_h)
    if data_format == "channels_first":
        output, new_h = np.moveaxis(output, 1, -1), np.moveaxis(new_h, 1, -1)
    np.testing.assert_allclose(output, expected, atol=ATOL)
    np.testing.assert_array_equal(output, new_h)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_recurrent_dropout_mask_enters_the_flows_and_links_only(data_format):
    # The documented placement: the flow generator reads h * mask and the
    # links are warps of h * mask; the update z * h uses h itself.
    rng = np.random.default_rng(6)
    links = 2
    weights = traj_gru_weights(rng, links, "field")
    x = rng.uniform(-1, 1, size=(BATCH, ROWS, COLS, CHANNELS))
    h = rng.uniform(-1, 1, size=(BATCH, ROWS, COLS, FILTERS))
    mask = rng.choice([0.0, 2.0], size=h.shape)
    f = FILTERS
    masked = h * mask
    flows = reference_traj.flows_of(x, masked, weights)
    hh = (
        reference_traj.warp(masked, flows)
        @ weights["recurrent_kernel"].reshape(-1, 3 * f)
        + weights["bias"][1]
    )
    xh = (
        reference.conv_nd(x, weights["kernel"], padding="same")
        + weights["bias"][0]
    )
    z = reference.sigmoid(xh[..., :f] + hh[..., :f])
    r = reference.sigmoid(xh[..., f : 2 * f] + hh[..., f : 2 * f])
    h_tilde = np.tanh(xh[..., 2 * f :] + r * hh[..., 2 * f :])
    expected = z * h + (1 - z) * h_tilde

    cell = kc.TrajGRU2DCell(
        FILTERS, 3, data_format=data_format, **small_layer_options(links=links)
    )
    if data_format == "channels_first":
        x, h, mask = (to_channels_first(a, 1) for a in (x, h, mask))
    cell.build(x.shape)
    set_weights_by_name(cell, weights)
    x, h, mask = (ops.convert_to_tensor(a, "float32") for a in (x, h, mask))
    output, _ = cell.recurrent_step(
        cell.input_projection(x), [h], recurrent_dropout_mask=mask
    )
    output = numpy(output)
    if data_format == "channels_first":
        output = np.moveaxis(output, 1, -1)
    np.testing.assert_allclose(output, expected, atol=ATOL)


# --------------------------------------------------------------------------
# The layer over sequences
# --------------------------------------------------------------------------


def frames(rng, shape=(BATCH, TIME, ROWS, COLS, CHANNELS)):
    return rng.uniform(-1, 1, size=shape).astype("float32")


def built_layer(x_shape, weights, **options):
    layer = kc.TrajGRU2D(FILTERS, 3, **small_layer_options(**options))
    layer.build(x_shape)
    set_weights_by_name(layer.cell, weights)
    return layer


SEQUENCE_CASES = {
    "plain": {},
    "masked": {"mask": True},
    "go_backwards": {"go_backwards": True, "mask": True},
    "initial_state": {"initial_state": True},
    "channels_first": {"data_format": "channels_first", "mask": True},
}


@pytest.mark.parametrize("name", list(SEQUENCE_CASES))
def test_sequence_matches_numpy_reference(name):
    spec = dict(SEQUENCE_CASES[name])
    masked = spec.pop("mask", False)
    with_state = spec.pop("initial_state", False)
    rng = np.random.default_rng(8)
    weights = traj_gru_weights(rng, 3, "field")
    x = frames(rng)
    h0 = rng.uniform(-1, 1, size=(BATCH, ROWS, COLS, FILTERS))
    mask = MASK if masked else None
    expected, expected_h = reference_traj.traj_gru_reference(
        x,
        weights,
        h0=h0 if with_state else None,
        mask=mask,
        go_backwards=spec.get("go_backwards", False),
    )
    channels_first = spec.get("data_format") == "channels_first"
    if channels_first:
        x, h0 = to_channels_first(x, 2), to_channels_first(h0, 1)
    layer = built_layer(
        x.shape, weights, return_sequences=True, return_state=True, **spec
    )
    kwargs = {"mask": mask}
    if with_state:
        kwargs["initial_state"] = [h0.astype("float32")]
    outputs, h = (numpy(t) for t in layer(x, **kwargs))
    if channels_first:
        outputs, h = np.moveaxis(outputs, 2, -1), np.moveaxis(h, 1, -1)
    np.testing.assert_allclose(outputs, expected, atol=ATOL)
    np.testing.assert_allclose(h, expected_h, atol=ATOL)


@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("return_state", [False, True])
def test_return_structure_is_keras_gru_s(return_sequences, return_state):
    rng = np.random.default_rng(9)
    weights = traj_gru_weights(rng, 3, "field")
    x = frames(rng)
    expected, expected_h = reference_traj.traj_gru_reference(x, weights)
    layer = built_layer(
        x.shape,
        weights,
        return_sequences=return_sequences,
        return_state=return_state,
    )
    result = layer(x)
    output = expected if return_sequences else expected_h
    if not return_state:
        np.testing.assert_allclose(numpy(result), output, atol=ATOL)
        return
    assert isinstance(result, (list, tuple)) and len(result) == 2
    np.testing.assert_allclose(numpy(result[0]), output, atol=ATOL)
    np.testing.assert_allclose(numpy(result[1]), expected_h, atol=ATOL)


def test_unknown_frame_sizes_in_a_functional_model():
    rng = np.random.default_rng(10)
    weights = traj_gru_weights(rng, 3, "field")
    inputs = keras.Input((None, None, None, CHANNELS))
    layer = kc.TrajGRU2D(FILTERS, 3, **small_layer_options())
    model = keras.Model(inputs, layer(inputs))
    set_weights_by_name(layer.cell, weights)
    for shape in [(2, 3, 6, 5, CHANNELS), (1, 4, 4, 7, CHANNELS)]:
        x = frames(rng, shape)
        _, expected = reference_traj.traj_gru_reference(x, weights)
        np.testing.assert_allclose(
            numpy(model(x)), expected, atol=ATOL, err_msg=str(shape)
        )


def test_stateful_layer_continues_where_the_last_batch_ended():
    rng = np.random.default_rng(11)
    weights = traj_gru_weights(rng, 3, "field")
    x = frames(rng, (BATCH, 4, ROWS, COLS, CHANNELS))
    expected, _ = reference_traj.traj_gru_reference(x, weights)
    inputs = keras.Input(batch_shape=(BATCH, None, ROWS, COLS, CHANNELS))
    layer = kc.TrajGRU2D(
        FILTERS,
        3,
        stateful=True,
        return_sequences=True,
        **small_layer_options(),
    )
    model = keras.Model(inputs, layer(inputs))
    set_weights_by_name(layer.cell, weights)
    first = numpy(model(x[:, :2]))
    second = numpy(model(x[:, 2:]))
    np.testing.assert_allclose(
        np.concatenate([first, second], axis=1), expected, atol=ATOL
    )
    layer.reset_state()
    np.testing.assert_allclose(
        numpy(model(x[:, :2])), expected[:, :2], atol=ATOL
    )


def test_stacked_with_convgru_and_convlstm_cells():
    rng = np.random.default_rng(12)
    traj = traj_gru_weights(rng, 3, "field")
    x = frames(rng)
    cells = [
        kc.TrajGRU2DCell(FILTERS, 3, **small_layer_options()),
        kc.ConvGRU2DCell(2, 3, padding="same"),
        kc.ConvLSTM2DCell(2, 3, padding="same"),
    ]
    layer = kc.ConvRNN(cells, return_sequences=True)
    layer.build(x.shape)
    set_weights_by_name(cells[0], traj)
    gru = [rng.normal(scale=0.4, size=v.shape) for v in cells[1].weights]
    lstm = [rng.normal(scale=0.4, size=v.shape) for v in cells[2].weights]
    for cell, values in ((cells[1], gru), (cells[2], lstm)):
        for variable, value in zip(cell.weights, values):
            variable.assign(value.astype("float32"))
    y, _ = reference_traj.traj_gru_reference(x, traj)
    y, _ = reference.conv_gru_reference(y, *gru, padding="same")
    expected, _, _ = reference.conv_lstm_reference(y, *lstm, padding="same")
    np.testing.assert_allclose(numpy(layer(x)), expected, atol=ATOL)


def test_zero_flow_weights_make_it_a_convgru_with_the_summed_links():
    # Flows = Ff * f + bff = 0 whatever the (random) rest of the flow
    # generator computes, so every link h_l is h: U * concat(h, ..., h) is
    # the 1x1 convolution U_0 + ... + U_{L-1}, which is a 3x3 ConvGRU
    # kernel with only its centre tap.
    rng = np.random.default_rng(13)
    links = 3
    weights = traj_gru_weights(rng, links, "zero")
    x = frames(rng)
    mask = MASK
    traj = built_layer(x.shape, weights, return_sequences=True)
    blocks = weights["recurrent_kernel"][0, 0].reshape(links, FILTERS, -1)
    recurrent = np.zeros((3, 3, FILTERS, 3 * FILTERS))
    recurrent[1, 1] = blocks.sum(axis=0)
    gru = kc.ConvGRU2D(FILTERS, 3, padding="same", return_sequences=True)
    gru.build(x.shape)
    gru.set_weights(
        [
            w.astype("float32")
            for w in (weights["kernel"], recurrent, weights["bias"])
        ]
    )
    np.testing.assert_allclose(
        numpy(traj(x, mask=mask)), numpy(gru(x, mask=mask)), atol=1e-5
    )


def test_cell_in_a_plain_keras_rnn_matches_the_reference():
    rng = np.random.default_rng(14)
    weights = traj_gru_weights(rng, 3, "field")
    x = frames(rng)
    cell = kc.TrajGRU2DCell(FILTERS, 3, **small_layer_options())
    rnn = keras.layers.RNN(cell, return_sequences=True)
    rnn.build(x.shape)
    set_weights_by_name(cell, weights)
    # No mask: Keras's own masked JAX loop cannot broadcast a (batch, 1)
    # mask against an N-D state (ConvRNN can; tested above).
    expected, _ = reference_traj.traj_gru_reference(x, weights)
    np.testing.assert_allclose(numpy(rnn(x)), expected, atol=ATOL)


def test_dropout_is_active_in_training_only():
    rng = np.random.default_rng(15)
    weights = traj_gru_weights(rng, 3, "field")
    x = frames(rng)
    expected, _ = reference_traj.traj_gru_reference(x, weights)
    layer = built_layer(
        x.shape,
        weights,
        dropout=0.4,
        recurrent_dropout=0.4,
        seed=3,
        return_sequences=True,
    )
    np.testing.assert_allclose(numpy(layer(x)), expected, atol=ATOL)
    dropped = numpy(layer(x, training=True))
    assert np.all(np.isfinite(dropped))
    assert np.abs(dropped - expected).max() > 1e-2


def test_trains_with_fit_and_the_flows_learn():
    rng = np.random.default_rng(16)
    x = frames(rng, (4, TIME, ROWS, COLS, CHANNELS))
    y = rng.uniform(-0.5, 0.5, size=(4, ROWS, COLS, FILTERS)).astype("float32")
    layer = kc.TrajGRU2D(
        FILTERS,
        3,
        dropout=0.1,
        recurrent_dropout=0.1,
        links=2,
        flow_filters=FLOW_FILTERS,
        flow_kernel_size=3,
    )
    model = keras.Sequential([keras.Input(x.shape[1:]), layer])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    before = {v.name: numpy(v) for v in layer.cell.weights}
    history = model.fit(x, y, epochs=1, batch_size=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    after = {v.name: numpy(v) for v in layer.cell.weights}
    # The identity-initialized flow kernel gets a gradient from the start.
    for name in WEIGHT_NAMES:
        assert np.abs(after[name] - before[name]).max() > 0, name


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_computes_in_half_with_float32_variables(
    policy, float32_policy
):
    rng = np.random.default_rng(17)
    weights = traj_gru_weights(rng, 3, "field")
    x = frames(rng)
    expected, expected_h = reference_traj.traj_gru_reference(x, weights)
    keras.mixed_precision.set_dtype_policy(policy)
    layer = built_layer(
        x.shape, weights, return_sequences=True, return_state=True
    )
    assert all(v.dtype == "float32" for v in layer.weights)
    outputs = layer(x)
    compute_dtype = policy.split("_")[1]
    for tensor in outputs:
        assert keras.backend.standardize_dtype(tensor.dtype) == compute_dtype
    atol = 2e-2 if compute_dtype == "float16" else 8e-2
    sequence, h = (numpy(ops.cast(t, "float32")) for t in outputs)
    np.testing.assert_allclose(sequence, expected, atol=atol)
    np.testing.assert_allclose(h, expected_h, atol=atol)


# --------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------


def test_the_layer_shows_its_arguments_as_the_cell_normalizes_them():
    # Config round trips, registration and `.keras` files of every family:
    # tests/test_serialization.py.
    layer = kc.TrajGRU2D(
        FILTERS,
        (3, 1),
        links=2,
        flow_filters=6,
        flow_kernel_size=3,
        data_format="channels_first",
    )
    assert (layer.links, layer.flow_filters) == (2, 6)
    assert layer.flow_kernel_size == (3, 3) and layer.kernel_size == (3, 1)
    assert layer.data_format == "channels_first"
    with pytest.raises(AttributeError):
        layer.links = 4


@pytest.mark.parametrize(
    "argument,value,error",
    [
        ("strides", 2, ValueError),
        ("strides", (1, 2), ValueError),
        ("padding", "valid", ValueError),
        ("dilation_rate", 2, ValueError),
        ("links", 0, ValueError),
        ("links", 2.5, TypeError),
        ("flow_filters", -1, ValueError),
        ("flow_kernel_size", (3, 3, 3), ValueError),
        ("normalization", "layer", ValueError),
    ],
)
@pytest.mark.parametrize("cls", [kc.TrajGRU2DCell, kc.TrajGRU2D])
def test_bad_arguments_raise_naming_the_argument(cls, argument, value, error):
    with pytest.raises(error, match=rf"{argument}.*{re.escape(repr(value))}"):
        cls(FILTERS, 3, **{argument: value})


# --------------------------------------------------------------------------
# Edge cases
# --------------------------------------------------------------------------


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_an_empty_batch_gives_empty_outputs(data_format):
    layer = kc.TrajGRU2D(
        FILTERS,
        3,
        data_format=data_format,
        return_sequences=True,
        return_state=True,
        **small_layer_options(),
    )
    if data_format == "channels_first":
        x = np.zeros((0, TIME, CHANNELS, ROWS, COLS), "float32")
        step = (0, FILTERS, ROWS, COLS)
    else:
        x = np.zeros((0, TIME, ROWS, COLS, CHANNELS), "float32")
        step = (0, ROWS, COLS, FILTERS)
    sequence, h = layer(x)
    assert tuple(sequence.shape) == (0, TIME, *step[1:])
    assert tuple(h.shape) == step
