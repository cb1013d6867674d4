"""The benchmark scripts keep working: bench_convrnn.py's smoke run for
this session's backend (in this process, native peer included), its
driver's worker processes, the native peers' weight mappings, the
profiler; no timings are checked."""

import json
import os
import sys

import keras
import numpy as np
import pytest
from helpers import Job
from helpers import python
from helpers import run

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
import bench_convrnn  # noqa: E402
import peers  # noqa: E402
import profile_ops  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "benchmarks", "bench_convrnn.py")


def _session_setup():
    """The benchmark setup this test session runs: its Keras backend and,
    on TensorFlow, its oneDNN CPU path (CI runs the suite once each)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        # TensorFlow's own runtime check, as conftest.py's.
        on = bench_convrnn._onednn_enabled()
        return "tf-onednn-on" if on else "tf-onednn-off"
    assert backend in bench_convrnn.SETUPS, backend
    return backend


def _require_flax():
    # flax and optax are pinned in constraints.txt and installed by `make
    # install` (the bench extra): a missing one is a broken environment,
    # not a reason to skip the Flax peer.
    try:
        import flax  # noqa: F401
        import optax  # noqa: F401
    except ImportError as error:
        pytest.fail(
            f"the Flax peer needs flax and optax ({error}); they are pinned "
            "in constraints.txt: `pip install -c constraints.txt "
            '-e ".[bench]"` (`make install` does)'
        )


def _smoke_rows(tmp_path, setup, peer_names=None):
    out = tmp_path / "bench.md"
    argv = ["--smoke", "--in-process", "--setups", setup, "--out", str(out)]
    if peer_names is not None:
        argv += ["--peers", ",".join(peer_names)]
    assert bench_convrnn.main(argv) == 0
    with open(tmp_path / "bench.json") as f:
        results = json.load(f)
    return out.read_text(), results


def test_smoke_of_this_backend_reports_every_peer_with_positive_times(
    tmp_path,
):
    # What `make bench` runs in this session's setup: the Keras peers and
    # the native peers shown in its columns (plain PyTorch next to
    # TensorFlow and PyTorch, Flax next to JAX), every one once.
    setup = _session_setup()
    if setup == "jax":
        _require_flax()
    report, results = _smoke_rows(tmp_path, setup)
    natives = [
        p for p, spec in bench_convrnn.NATIVE_PEERS.items() if setup in spec[3]
    ]
    assert natives, setup
    expected = list(bench_convrnn.DEFAULT_PEERS) + natives
    assert [r["peer"] for r in results["rows"]] == expected
    for row in results["rows"]:
        assert row["fwd_ms"] > 0 and row["train_ms"] > 0, row
        assert row["rss_mb"] > 0, row
        assert f"| {row['peer']} | " in report, row["peer"]
        if row["peer"] in bench_convrnn.PEERS:
            assert row["setup"] == setup
            assert row["backend"] == keras.backend.backend()
    # The summary names the fastest layer of this setup.
    assert f"| smoke | {setup} | " in report
    if setup == "jax":
        (flax_row,) = [
            r for r in results["rows"] if r["peer"] == "flax ConvLSTMCell"
        ]
        assert flax_row["max_abs_diff_vs_kc"] < 1e-4
        assert "Flax has no ConvGRU" in report


@pytest.mark.tensorflow_session
def test_smoke_of_the_optional_peers(tmp_path):
    # Not in the default run, but kept working: once per CI run.
    optional = [
        p for p in bench_convrnn.PEERS if p not in bench_convrnn.DEFAULT_PEERS
    ]
    _, results = _smoke_rows(tmp_path, _session_setup(), optional)
    assert [r["peer"] for r in results["rows"]] == optional
    for row in results["rows"]:
        assert row["fwd_ms"] > 0 and row["train_ms"] > 0, row


@pytest.mark.tensorflow_session
def test_smoke_driver_runs_each_setup_in_a_worker_with_its_environment(
    tmp_path,
):
    # The command-line way (`make bench-smoke`): one worker process per
    # setup, started with that setup's KERAS_BACKEND and
    # TF_ENABLE_ONEDNN_OPTS; plain PyTorch runs in the torch setup's worker
    # and is shown in the TensorFlow column too.
    out = tmp_path / "driver.md"
    command = python(
        SCRIPT,
        "--smoke",
        "--setups",
        "tf-onednn-off,torch",
        "--peers",
        "keras.ConvLSTM2D,kc.ConvGRU2D,torch ConvGRU",
        "--out",
        out,
    )
    proc = run(Job("driver", command, separate_stderr=True), 600)
    assert proc.code == 0, proc.errors[-3000:]
    with open(tmp_path / "driver.json") as f:
        results = json.load(f)
    got = {(r["setup"], r["peer"]): r for r in results["rows"]}
    assert set(got) == {
        ("tf-onednn-off", "keras.ConvLSTM2D"),
        ("tf-onednn-off", "kc.ConvGRU2D"),
        ("torch", "keras.ConvLSTM2D"),
        ("torch", "kc.ConvGRU2D"),
        ("torch", "torch ConvGRU"),
    }
    assert got[("tf-onednn-off", "kc.ConvGRU2D")]["backend"] == "tensorflow"
    assert got[("tf-onednn-off", "kc.ConvGRU2D")]["onednn"] is False
    assert got[("torch", "kc.ConvGRU2D")]["backend"] == "torch"
    assert got[("torch", "torch ConvGRU")]["torch_threads"] >= 1
    report = out.read_text()
    (row,) = [
        line for line in report.splitlines() if "| torch ConvGRU |" in line
    ]
    # Its TensorFlow cells carry the mark of a measurement made elsewhere.
    assert "†" in row
    assert "TF_ENABLE_ONEDNN_OPTS=0, oneDNN off in every worker" in report


def test_default_run_is_small_and_std_with_jax_on_small_only():
    assert bench_convrnn.WORKLOADS["small"] == (4, 10, 32, 8, 32)
    assert bench_convrnn.WORKLOADS["std"] == (8, 10, 64, 16, 64)
    setups = list(bench_convrnn.DEFAULT_SETUPS)
    everything = list(bench_convrnn.DEFAULT_PEERS) + list(
        bench_convrnn.NATIVE_PEERS
    )
    todo = bench_convrnn.plan(["small", "std"], setups, everything, False)
    assert todo["small"][0] == setups
    assert todo["std"][0] == ["tf-onednn-on", "tf-onednn-off", "torch"]
    assert "flax ConvLSTMCell" in todo["small"][2]
    assert "flax ConvLSTMCell" not in todo["std"][2]
    assert "torch ConvLSTM" in todo["std"][2]
    # Asked for by name, JAX runs on std too.
    todo = bench_convrnn.plan(["std"], ["jax"], everything, True)
    assert todo["std"][0] == ["jax"]
    assert todo["std"][2] == ["flax ConvLSTMCell"]


def test_flax_mapping_reorders_the_gates_and_moves_the_forget_offset():
    # Ours: i, f, c, o; Flax: i, g (= our c), f, o, with sigmoid(f + 1).
    f = 2
    kernel = np.arange(3 * 3 * 1 * 4 * f, dtype="float32").reshape(
        3, 3, 1, 4 * f
    )
    recurrent = -np.arange(3 * 3 * f * 4 * f, dtype="float32").reshape(
        3, 3, f, 4 * f
    )
    bias = np.array([1, 1, 2, 2, 3, 3, 4, 4], "float32")  # i, f, c, o
    cell = peers.flax_params_from_kc(kernel, recurrent, bias)["params"]["cell"]
    np.testing.assert_array_equal(cell["ih"]["bias"], [1, 1, 3, 3, 1, 1, 4, 4])
    np.testing.assert_array_equal(cell["hh"]["bias"], np.zeros(4 * f))
    for ours, theirs in ((kernel, cell["ih"]), (recurrent, cell["hh"])):
        i, fg, c, o = np.split(ours, 4, axis=-1)
        np.testing.assert_array_equal(
            theirs["kernel"], np.concatenate([i, c, fg, o], axis=-1)
        )


@pytest.mark.jax_session  # builds kc.ConvLSTM2D on Keras's JAX backend
def test_flax_check_fails_loudly_on_a_wrong_mapping(monkeypatch):
    _require_flax()
    x = np.random.default_rng(0).standard_normal((1, 2, 6, 6, 2))
    x = x.astype("float32")
    _, diff = peers.check_flax_matches_kc(x, 3, 3)
    assert diff < 1e-4
    # Flax's order taken for ours: the outputs differ and the check says so.
    monkeypatch.setattr(peers, "OURS_TO_FLAX", (0, 1, 2, 3))
    with pytest.raises(AssertionError, match="weight mapping"):
        peers.check_flax_matches_kc(x, 3, 3)


def _torch_weight(kernel, recurrent, order):
    """A PyTorch Conv2d weight over cat(x, h) from our kernels: the input
    and state kernels stacked on the input-channel axis, the gates in
    `order`, laid out (out, in, kh, kw)."""
    import torch

    fused = np.concatenate([kernel, recurrent], axis=2)
    gates = np.split(fused, len(order), axis=-1)
    fused = np.concatenate([gates[k] for k in order], axis=-1)
    return torch.from_numpy(np.ascontiguousarray(fused.transpose(3, 2, 0, 1)))


def test_plain_pytorch_peers_compute_our_convlstm_and_convgru():
    # With our weights, the ndrplz-style ConvLSTM is kc.ConvLSTM2D, and the
    # happyjin-style ConvGRU is kc.ConvGRU2D(reset_after=False) with its
    # update gate u = 1 - z (sigmoid(-a) = 1 - sigmoid(a)).
    torch = pytest.importorskip("torch")
    import keras_convgru as kc

    conv_lstm, conv_gru = peers.torch_modules()
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6, 2))
    x = x.astype("float32")
    x_torch = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 1, 4, 2, 3)))
    f = 3
    common = dict(padding="same", return_sequences=True)

    lstm = kc.ConvLSTM2D(f, 3, **common)
    ours = keras.ops.convert_to_numpy(lstm(x))
    k, u, b = (keras.ops.convert_to_numpy(w) for w in lstm.cell.weights)
    theirs = conv_lstm(2, f, 3)
    with torch.no_grad():
        # Ours i, f, c, o; theirs i, f, o, g.
        theirs.cell.conv.weight.copy_(_torch_weight(k, u, (0, 1, 3, 2)))
        gates = np.split(b, 4)
        theirs.cell.conv.bias.copy_(
            torch.from_numpy(np.concatenate([gates[k] for k in (0, 1, 3, 2)]))
        )
        y = theirs(x_torch).numpy().transpose(0, 1, 3, 4, 2)
    np.testing.assert_allclose(y, ours, atol=1e-5)

    gru = kc.ConvGRU2D(f, 3, reset_after=False, **common)
    gru.build(x.shape)
    gru.cell.bias.assign(
        np.random.default_rng(1).uniform(-0.5, 0.5, 3 * f).astype("float32")
    )
    ours = keras.ops.convert_to_numpy(gru(x))
    k = keras.ops.convert_to_numpy(gru.cell.kernel)
    u = keras.ops.convert_to_numpy(gru.cell.recurrent_kernel)
    b = keras.ops.convert_to_numpy(gru.cell.bias)
    sign = np.concatenate([-np.ones(f), np.ones(2 * f)]).astype("float32")
    k, u, b = k * sign, u * sign, b * sign  # z -> u = 1 - z
    theirs = conv_gru(2, f, 3)
    with torch.no_grad():
        # conv_gates: reset (our r), update (our -z); conv_can: our h.
        weight = _torch_weight(k, u, (1, 0, 2))
        theirs.cell.conv_gates.weight.copy_(weight[: 2 * f])
        theirs.cell.conv_can.weight.copy_(weight[2 * f :])
        zb, rb, hb = np.split(b, 3)
        theirs.cell.conv_gates.bias.copy_(
            torch.from_numpy(np.concatenate([rb, zb]))
        )
        theirs.cell.conv_can.bias.copy_(torch.from_numpy(hb))
        y = theirs(x_torch).numpy().transpose(0, 1, 3, 4, 2)
    np.testing.assert_allclose(y, ours, atol=1e-5)


def test_conv_flops_counts_both_convolutions_of_every_step():
    # 1 sample, 1 step, 1x1 frame: 9 taps * (C*G*F + F*G*F) MACs, 2 FLOPs.
    flops = bench_convrnn.conv_flops(1, 1, 1, 2, 3, 4)
    assert flops == 2 * 9 * (2 * 4 * 3 + 3 * 4 * 3)
    # Linear in batch, steps and pixels.
    assert bench_convrnn.conv_flops(2, 5, 4, 2, 3, 4) == 2 * 5 * 16 * flops


PROFILE_SCRIPT = os.path.join(HERE, "..", "benchmarks", "profile_ops.py")


def test_op_profile_smoke_run_finds_the_convolutions(tmp_path):
    # The profiler script runs TensorFlow in its workers whatever the
    # session's backend; the convolutions of a training step must show up.
    command = python(
        PROFILE_SCRIPT,
        "--workloads",
        "smoke",
        "--peers",
        "kc.ConvGRU2D,keras.ConvLSTM2D",
        "--steps",
        "1",
        "--out",
        tmp_path,
    )
    proc = run(Job("profile", command, separate_stderr=True), 600)
    assert proc.code == 0, proc.errors[-3000:]
    with open(tmp_path / "profile-cpu-tensorflow.json") as f:
        results = json.load(f)
    assert [r["peer"] for r in results] == ["kc.ConvGRU2D", "keras.ConvLSTM2D"]
    expected_onednn = os.environ.get("KC_EXPECT_ONEDNN")
    for result in results:
        ms = result["op_ms"]
        assert ms["conv forward"] > 0, result
        assert ms["conv grad wrt input"] > 0, result
        assert ms["conv grad wrt kernel"] > 0, result
        assert result["wall_ms"] > 0
        # Every convolution is counted as one, under either CPU path.
        unmapped = [op for op in result["other_op_ms"] if "Conv" in op]
        assert not unmapped, result
        if expected_onednn is not None:
            assert result["onednn"] == (expected_onednn == "1"), result


def test_op_profile_maps_onednn_op_names_to_the_ops_they_stand_for():
    # Names from TensorFlow 2.21 profiles with TF_ENABLE_ONEDNN_OPTS=1.
    assert profile_ops._category("_MklNativeConv2D") == "conv forward"
    assert profile_ops._category("_MklNativeFusedConv2D") == "conv forward"
    assert profile_ops._category("_FusedConv2D") == "conv forward"
    assert (
        profile_ops._category("_MklNativeConv2DBackpropInput")
        == "conv grad wrt input"
    )
    for name in (
        "_MklNativeConv2DBackpropFilter",
        "_MklNativeConv2DBackpropFilterWithBias",
        "Conv2DBackpropFilter",
    ):
        assert profile_ops._category(name) == "conv grad wrt kernel", name
    assert profile_ops._category("_MklTranspose") == "transpose / reshape"
    assert profile_ops._category("AssignVariableOp") == "other"


def test_a_peer_row_is_its_median_round_with_every_round_and_peak_memory():
    rounds = [
        {"fwd_ms": 1.0, "train_ms": 30.0, "rss_mb": 700},
        {"fwd_ms": 2.0, "train_ms": 10.0, "rss_mb": 900},
        {"fwd_ms": 3.0, "train_ms": 20.0, "rss_mb": 800},
    ]
    row = bench_convrnn._median_round(rounds)
    assert row["train_ms"] == 20.0 and row["fwd_ms"] == 3.0
    assert row["train_rounds_ms"] == [30.0, 10.0, 20.0]
    assert row["rss_mb"] == 900
    # Even count: the lower middle round, never an average of two.
    assert bench_convrnn._median_round(rounds[:2])["train_ms"] == 10.0


def test_loop_floor_is_the_minimal_recurrence_it_claims():
    # h_t = tanh((W * x_t + b + U * h_{t-1})[first gate]), h_0 = 0,
    # against a NumPy loop with the model's own weights.
    import keras
    import numpy as np
    from keras import ops

    gates, filters, frame, channels = 3, 2, 4, 3
    model = bench_convrnn._loop_floor_model(keras, ops, gates, filters, frame)
    x = np.random.default_rng(0).standard_normal((2, 3, frame, frame, channels))
    x = x.astype("float32")
    model(x)  # builds the weights
    kernel = ops.convert_to_numpy(model.kernel)
    recurrent = ops.convert_to_numpy(model.rnn.cell.recurrent_kernel)
    bias = np.random.default_rng(1).standard_normal(gates * filters)
    model.bias.assign(bias.astype("float32"))
    y = ops.convert_to_numpy(model(x))

    def conv_same(a, k):
        padded = np.pad(a, ((0, 0), (1, 1), (1, 1), (0, 0)))
        out = np.zeros(a.shape[:3] + (k.shape[-1],))
        for i in range(3):
            for j in range(3):
                window = padded[:, i : i + frame, j : j + frame, :]
                out += window @ k[i, j]
        return out

    h = np.zeros((2, frame, frame, filters))
    for t in range(3):
        s = conv_same(x[:, t], kernel) + bias + conv_same(h, recurrent)
        h = np.tanh(s[..., :filters])
        np.testing.assert_allclose(y[:, t], h, rtol=1e-4, atol=1e-5)


def test_per_gate_peer_is_keras_conv_lstm2d_with_its_weights():
    # The lever's peer must compute the layer it is compared with: the
    # built-in's eight convolutions per step, on the built-in's weights.
    import keras_convgru as kc

    filters = 3
    x = np.random.default_rng(0).standard_normal((2, 4, 6, 6, 2))
    x = x.astype("float32")
    peer = bench_convrnn._per_gate_lstm(keras, kc, filters)
    builtin = keras.layers.ConvLSTM2D(
        filters, 3, padding="same", return_sequences=True
    )
    peer(x), builtin(x)
    assert not peer.hoists_input_projection(x.shape)
    rng = np.random.default_rng(1)
    for ours, theirs in zip(peer.weights, builtin.weights):
        assert ours.shape == theirs.shape
        value = (0.5 * rng.standard_normal(theirs.shape)).astype("float32")
        ours.assign(value)
        theirs.assign(value)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(peer(x)),
        keras.ops.convert_to_numpy(builtin(x)),
        rtol=1e-5,
        atol=1e-5,
    )
