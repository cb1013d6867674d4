"""PredRNN / PredRNN++ / SA-ConvLSTM cells against a plain NumPy oracle.

The oracle (``tests/reference_memory.py``) is written from the contract's
equations, weight tables and zigzag rule only and knows nothing about
Keras. Every test draws random weights in the contract's layout, sets them
BY NAME (``w.name`` of every variable in ``cell.weights``; the set of names
and shapes must be the contract's table, which is itself checked) and
compares the float32 outputs and every cell's final states with the
float64 oracle at rtol = atol = 1e-5.
"""

import keras
import numpy as np
import pytest
import reference_memory as ref

import keras_convgru as kc

ATOL = 1e-5
RTOL = 1e-5
SCALE = 0.3
BATCH = 2
TIME = 3
ROWS, COLS = 5, 6
CHANNELS = 2
K = 3
# Batch 0 skips step 1; batch 1 skips its first step.
MASK = np.array([[1, 0, 1], [0, 1, 1]], dtype=bool)


# --- the contract's weight tables -------------------------------------------


def contract_shapes(kind, in_channels, f, use_bias=True, d=None, adapter=False):
    """Weight name -> shape, channels_last, as the contract's tables."""
    k = (K, K)
    if kind == "st_lstm":
        shapes = {
            "kernel": k + (in_channels, 7 * f),
            "recurrent_kernel": k + (f, 4 * f),
            "memory_kernel": k + (f, 3 * f),
            "output_kernel": k + (2 * f, f),
            "fusion_kernel": (1, 1, 2 * f, f),
            "bias": (7 * f,),
        }
        if adapter:
            shapes["decoupling_kernel"] = (1, 1, f, f)
    elif kind == "causal_lstm":
        shapes = {
            "kernel": k + (in_channels, 7 * f),
            "recurrent_kernel": k + (f, 4 * f),
            "cell_kernel": k + (f, 3 * f),
            "memory_kernel": k + (f, 3 * f),
            "cell_to_memory_kernel": k + (f, 4 * f),
            "memory_output_kernel": k + (f, f),
            "fusion_kernel": (1, 1, 2 * f, f),
            "bias": (7 * f,),
        }
    elif kind == "ghu":
        shapes = {
            "kernel": k + (in_channels, 2 * f),
            "recurrent_kernel": k + (f, 2 * f),
            "bias": (2 * f,),
        }
    elif kind == "sa_conv_lstm":
        d = max(1, f // 4) if d is None else d
        shapes = {
            "kernel": k + (in_channels, 4 * f),
            "recurrent_kernel": k + (f, 4 * f),
            "bias": (4 * f,),
            "attention_kernel": (1, 1, f, 2 * d + f),
            "attention_bias": (2 * d + f,),
            "memory_attention_kernel": (1, 1, f, d + f),
            "memory_attention_bias": (d + f,),
            "attention_output_kernel": (1, 1, 2 * f, 2 * f),
            "attention_output_bias": (2 * f,),
            "memory_gate_kernel": (1, 1, 3 * f, 3 * f),
            "memory_gate_bias": (3 * f,),
        }
    elif kind == "conv_lstm":
        shapes = {
            "kernel": k + (in_channels, 4 * f),
            "recurrent_kernel": k + (f, 4 * f),
            "bias": (4 * f,),
        }
    elif kind == "conv_gru":
        shapes = {
            "kernel": k + (in_channels, 3 * f),
            "recurrent_kernel": k + (f, 3 * f),
            "bias": (2, 3 * f),
        }
    else:
        raise ValueError(kind)
    if not use_bias:
        del shapes["bias"]
    return shapes


def random_weights(rng, shapes):
    return {
        name: (rng.normal(size=shape) * SCALE).astype("float32")
        for name, shape in shapes.items()
    }


def set_by_name(cell, weights):
    """Assign every variable of ``cell`` from ``weights`` by its name,
    checking names and shapes against the contract's table."""
    got = {w.name: tuple(w.shape) for w in cell.weights}
    want = {name: tuple(a.shape) for name, a in weights.items()}
    assert len(got) == len(cell.weights), "duplicate weight names"
    assert got == want, f"{type(cell).__name__}: {got} != contract {want}"
    for w in cell.weights:
        w.assign(weights[w.name])


# --- building cells ---------------------------------------------------------

NEW_CELL = {
    "st_lstm": lambda f, **kw: kc.SpatioTemporalLSTM2DCell(f, K, **kw),
    "causal_lstm": lambda f, **kw: kc.CausalLSTM2DCell(f, K, **kw),
    "ghu": lambda f, **kw: kc.GradientHighwayUnit2DCell(f, K, **kw),
    "sa_conv_lstm": lambda f, **kw: kc.SAConvLSTM2DCell(f, K, **kw),
    "conv_lstm": lambda f, **kw: kc.ConvLSTM2DCell(f, K, padding="same", **kw),
    "conv_gru": lambda f, **kw: kc.ConvGRU2DCell(f, K, padding="same", **kw),
}


def random_inputs(rng):
    x = rng.uniform(-1.0, 1.0, (BATCH, TIME, ROWS, COLS, CHANNELS))
    return x.astype("float32")


def to_format(a, data_format, axis):
    """channels_last array -> the layer's layout (channel axis ``axis``)."""
    if data_format == "channels_first":
        return np.ascontiguousarray(np.moveaxis(a, -1, axis))
    return a


def from_format(a, data_format, axis):
    a = keras.ops.convert_to_numpy(a)
    if data_format == "channels_first":
        return np.moveaxis(a, axis, -1)
    return a


def random_states(rng, kinds_filters):
    """Non-zero initial states: per cell, the list of its states."""
    states = []
    for kind, f in kinds_filters:
        n = ref.STEPS[kind][1]
        states.append(
            [
                rng.uniform(-0.8, 0.8, (BATCH, ROWS, COLS, f)).astype("float32")
                for _ in range(n)
            ]
        )
    return states


def assert_close(actual, expected, what):
    np.testing.assert_allclose(
        actual, expected, rtol=RTOL, atol=ATOL, err_msg=what
    )


def run_stack(
    specs,
    *,
    layer=None,
    data_format="channels_last",
    go_backwards=False,
    masked=False,
    initial_state=False,
    seed=0,
    bare_cell=False,
):
    """Build the cells of ``specs`` ((kind, filters, options) triples) in
    a ``kc.ConvRNN`` (or ``layer``, a one-cell layer class), set random
    weights by name, run, and compare with the oracle."""
    rng = np.random.default_rng(seed)
    x = random_inputs(rng)
    if layer is not None:
        ((kind, f, options),) = specs
        rnn = layer(
            f,
            K,
            data_format=data_format,
            go_backwards=go_backwards,
            return_sequences=True,
            return_state=True,
            **options,
        )
    else:
        cells = [
            NEW_CELL[kind](f, data_format=data_format, **options)
            for kind, f, options in specs
        ]
        rnn = kc.ConvRNN(
            cells[0] if bare_cell else cells,
            go_backwards=go_backwards,
            return_sequences=True,
            return_state=True,
        )
    x_in = to_format(x, data_format, 2)
    rnn.build(x_in.shape)
    cells = [rnn.cell] if layer is not None else cells

    entries = []
    in_channels = CHANNELS
    for cell, (kind, f, options) in zip(cells, specs):
        shapes = contract_shapes(
            kind,
            in_channels,
            f,
            use_bias=options.get("use_bias", True),
            d=options.get("attention_filters"),
        )
        weights = random_weights(rng, shapes)
        set_by_name(cell, weights)
        entries.append(ref.cell(kind, weights))
        in_channels = f

    kwargs = {}
    states0 = None
    if initial_state:
        states0 = random_states(rng, [(kind, f) for kind, f, _ in specs])
        kwargs["initial_state"] = [
            to_format(s, data_format, 1) for cell in states0 for s in cell
        ]
    mask = MASK if masked else None
    if masked:
        kwargs["mask"] = keras.ops.convert_to_tensor(MASK)
    result = rnn(x_in, **kwargs)

    initial_output = None
    if masked and states0 is not None and keras.backend.backend() == "jax":
        # Keras's own JAX rnn (keras.layers.GRU too) repeats the initial
        # hidden state, not zeros, at a masked first step.
        initial_output = states0[-1][0]
    expected_out, expected_states = ref.stack_reference(
        entries,
        x,
        states0,
        go_backwards=go_backwards,
        mask=mask,
        initial_output=initial_output,
    )
    output = from_format(result[0], data_format, 2)
    assert_close(output, expected_out, "output sequence")
    if layer is not None or bare_cell:
        # A one-cell layer returns [output, *states], as keras.layers.LSTM.
        got_states = [list(result[1:])]
    else:
        # kc.ConvRNN(cells): [output, *per-cell lists of states].
        got_states = [list(s) for s in result[1:]]
    assert len(got_states) == len(specs), "one state list per cell"
    for j, (got, want) in enumerate(zip(got_states, expected_states)):
        assert len(got) == len(want), f"cell {j}: number of states"
        for n, (g, w) in enumerate(zip(got, want)):
            g = from_format(g, data_format, 1)
            assert_close(g, w, f"cell {j} ({specs[j][0]}), state {n}")


# --- each layer alone -------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="plain"),
        pytest.param(
            {"go_backwards": True, "masked": True}, id="backwards-masked"
        ),
        pytest.param(
            {"data_format": "channels_first", "initial_state": True},
            id="channels_first-initial_state",
        ),
    ],
)
def test_spatiotemporal_lstm_layer(options):
    run_stack([("st_lstm", 4, {})], layer=kc.SpatioTemporalLSTM2D, **options)


def test_spatiotemporal_lstm_layer_without_bias():
    run_stack(
        [("st_lstm", 3, {"use_bias": False})],
        layer=kc.SpatioTemporalLSTM2D,
        initial_state=True,
        seed=1,
    )


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="plain"),
        pytest.param(
            {"masked": True, "initial_state": True}, id="masked-initial_state"
        ),
    ],
)
def test_causal_lstm_layer(options):
    run_stack([("causal_lstm", 4, {})], layer=kc.CausalLSTM2D, **options)


def test_gradient_highway_unit_alone():
    run_stack(
        [("ghu", 3, {})],
        initial_state=True,
        go_backwards=True,
        seed=2,
        bare_cell=True,
    )


@pytest.mark.parametrize("kind", ["ghu", "st_lstm"])
def test_one_cell_list_with_flat_initial_state(kind):
    # kc.ConvRNN([cell]) takes the same flat initial_state list as
    # kc.ConvRNN(cell) (and keras.layers.RNN([GRUCell]) does).
    run_stack([(kind, 3, {})], initial_state=True, seed=2)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="default_attention_filters"),
        pytest.param(
            {
                "attention_filters": 2,
                "masked": True,
                "initial_state": True,
                "data_format": "channels_first",
            },
            id="d2-masked-initial_state-channels_first",
        ),
    ],
)
def test_sa_conv_lstm_layer(options):
    options = dict(options)
    cell_options = {}
    if "attention_filters" in options:
        cell_options["attention_filters"] = options.pop("attention_filters")
    run_stack(
        [("sa_conv_lstm", 4, cell_options)],
        layer=kc.SAConvLSTM2D,
        seed=3,
        **options,
    )


# --- stacks: the zigzag memory ----------------------------------------------


def test_predrnn_stack_of_four_st_lstm_cells():
    # Non-zero initial states: the zigzag starts from the LAST memory
    # cell's initial m, not from each cell's own.
    run_stack([("st_lstm", 3, {})] * 4, initial_state=True, seed=4)


def test_predrnn_stack_backwards_masked():
    run_stack(
        [("st_lstm", 3, {})] * 2,
        go_backwards=True,
        masked=True,
        initial_state=True,
        seed=5,
    )


def test_predrnn_pp_stack_causal_ghu_causal_causal():
    run_stack(
        [
            ("causal_lstm", 3, {}),
            ("ghu", 3, {}),
            ("causal_lstm", 3, {}),
            ("causal_lstm", 3, {}),
        ],
        initial_state=True,
        masked=True,
        seed=6,
    )


def test_mixed_stack_st_lstm_conv_lstm_conv_gru_st_lstm():
    # Non-memory cells in between, of other filters, never see m.
    run_stack(
        [
            ("st_lstm", 3, {}),
            ("conv_lstm", 4, {}),
            ("conv_gru", 2, {}),
            ("st_lstm", 3, {}),
        ],
        initial_state=True,
        data_format="channels_first",
        seed=7,
    )


# --- PredRNN-V2's decoupling loss -------------------------------------------


def _decoupling_layer(rng, x, weight, use_adapter):
    layer = kc.SpatioTemporalLSTM2D(
        3, K, decoupling_weight=weight, return_sequences=True
    )
    layer.build(x.shape)
    weights = random_weights(
        rng, contract_shapes("st_lstm", CHANNELS, 3, adapter=use_adapter)
    )
    set_by_name(layer.cell, weights)
    return layer, weights


def test_decoupling_loss_matches_reference():
    rng = np.random.default_rng(8)
    x = random_inputs(rng)
    layer, weights = _decoupling_layer(rng, x, 0.1, use_adapter=True)
    y = layer(x, training=True)
    assert len(layer.losses) == 1
    loss = keras.ops.convert_to_numpy(layer.losses[0])
    assert loss.shape == ()

    entry = ref.cell("st_lstm", weights)
    expected_y, _, deltas = ref.stack_reference([entry], x, return_deltas=True)
    assert_close(keras.ops.convert_to_numpy(y), expected_y, "outputs")
    delta_c, delta_m = deltas[0]
    # The oracle's |cos| stays away from 0/0: the deltas are far from zero.
    assert np.abs(delta_c).sum(axis=(2, 3)).min() > 1e-3
    assert np.abs(delta_m).sum(axis=(2, 3)).min() > 1e-3
    expected = ref.decoupling_loss(
        delta_c, delta_m, weights["decoupling_kernel"], 0.1
    )
    assert expected > 1e-3
    assert_close(loss, expected, "decoupling loss")

    layer(x, training=False)
    assert len(layer.losses) == 0


def test_no_decoupling_loss_or_adapter_at_weight_zero():
    rng = np.random.default_rng(9)
    x = random_inputs(rng)
    # set_by_name checks that there is no decoupling_kernel.
    layer, _ = _decoupling_layer(rng, x, 0.0, use_adapter=False)
    layer(x, training=True)
    assert len(layer.losses) == 0


# --- initialization, errors -------------------------------------------------


@pytest.mark.parametrize(
    "kind,blocks,forget",
    [
        ("st_lstm", 7, (1, 4)),
        ("causal_lstm", 7, (1, 4)),
        ("sa_conv_lstm", 4, (1,)),
    ],
)
@pytest.mark.parametrize("unit_forget_bias", [True, False])
def test_unit_forget_bias(kind, blocks, forget, unit_forget_bias):
    f = 3
    cell = NEW_CELL[kind](f, unit_forget_bias=unit_forget_bias)
    cell.build((BATCH, ROWS, COLS, CHANNELS))
    (bias,) = [w for w in cell.weights if w.name == "bias"]
    bias = np.asarray(bias.numpy())
    assert bias.shape == (blocks * f,)
    for j in range(blocks):
        want = 1.0 if (unit_forget_bias and j in forget) else 0.0
        np.testing.assert_array_equal(
            bias[j * f : (j + 1) * f], want, err_msg=f"bias block {j}"
        )


def test_memory_cells_of_different_filters_in_one_stack():
    x = random_inputs(np.random.default_rng(10))
    with pytest.raises(ValueError) as info:
        kc.ConvRNN(
            [
                kc.SpatioTemporalLSTM2DCell(3, K, name="memory_a"),
                kc.GradientHighwayUnit2DCell(4, K),
                kc.CausalLSTM2DCell(4, K, name="memory_b"),
            ]
        )(x)
    message = str(info.value)
    assert "memory_a" in message and "memory_b" in message, message
    assert "filters" in message, message


@pytest.mark.parametrize(
    "argument,value",
    [("strides", 2), ("padding", "valid"), ("dilation_rate", 2)],
)
@pytest.mark.parametrize(
    "kind", ["st_lstm", "causal_lstm", "ghu", "sa_conv_lstm"]
)
def test_non_unit_convolution_arguments_raise(kind, argument, value):
    x = random_inputs(np.random.default_rng(11))
    with pytest.raises(ValueError, match=argument):
        kc.ConvRNN(NEW_CELL[kind](3, **{argument: value}))(x)


# --- the oracle itself ------------------------------------------------------


def test_oracle_conv_lstm_and_gru_steps_match_the_sequence_references():
    """The oracle's ConvLSTM/ConvGRU steps, stepped by stack_reference
    (mask, go_backwards, initial state), against tests/reference.py."""
    import reference

    rng = np.random.default_rng(12)
    x = random_inputs(rng).astype(np.float64)
    for kind in ("conv_lstm", "conv_gru"):
        w = random_weights(rng, contract_shapes(kind, CHANNELS, 3))
        (states0,) = random_states(rng, [(kind, 3)])
        out, (states,) = ref.stack_reference(
            [ref.cell(kind, w)], x, [states0], go_backwards=True, mask=MASK
        )
        common = dict(padding="same", go_backwards=True, mask=MASK)
        if kind == "conv_lstm":
            want = reference.conv_lstm_reference(
                x, w["kernel"], w["recurrent_kernel"], w["bias"],
                h0=states0[0], c0=states0[1], **common,
            )  # fmt: skip
        else:
            want = reference.conv_gru_reference(
                x, w["kernel"], w["recurrent_kernel"], w["bias"],
                h0=states0[0], **common,
            )  # fmt: skip
        np.testing.assert_allclose(out, want[0], rtol=1e-12, atol=1e-12)
        for got, expected in zip(states, want[1:]):
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_oracle_zigzag_matches_a_hand_rolled_loop():
    """Two ST-LSTM cells: the first cell's m at t is the second cell's m'
    of t - 1 (at t = 0 the second cell's initial m), so the stack differs
    from cells that keep their own m."""
    rng = np.random.default_rng(13)
    x = random_inputs(rng)
    w1 = random_weights(rng, contract_shapes("st_lstm", CHANNELS, 3))
    w2 = random_weights(rng, contract_shapes("st_lstm", 3, 3))
    states0 = random_states(rng, [("st_lstm", 3)] * 2)
    zig, zig_states = ref.stack_reference(
        [ref.cell("st_lstm", w1), ref.cell("st_lstm", w2)], x, states0
    )
    own, _ = ref.stack_reference(
        [ref.cell("st_lstm", w1, memory=False), ref.cell("st_lstm", w2, False)],
        x,
        states0,
    )
    assert not np.allclose(zig, own)
    # Hand-rolled zigzag over the step function.
    s1, s2 = [list(s) for s in states0]
    m = s2[2]
    for t in range(TIME):
        y, s1 = ref.st_lstm_step(x[:, t], [s1[0], s1[1], m], w1)
        y, s2 = ref.st_lstm_step(y, [s2[0], s2[1], s1[2]], w2)
        m = s2[2]
        np.testing.assert_allclose(zig[:, t], y, rtol=1e-12, atol=1e-12)
    for got, want in zip(zig_states, [s1, s2]):
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
