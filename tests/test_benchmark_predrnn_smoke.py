"""The PredRNN benchmark keeps working: its plain-PyTorch PredRNN and
PredRNN++ compute our stacks with the mapped weights (on this session's
Keras backend), its smoke run in this process for this session's setup,
its driver's worker processes, and the workload the issue defines; no
timings are checked."""

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
import bench_predrnn  # noqa: E402
import peers_predrnn  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "benchmarks", "bench_predrnn.py")
STACKS = ("predrnn", "predrnn++")


def _session_setup():
    """The benchmark setup of this test session: its Keras backend and, on
    TensorFlow, its oneDNN path (TensorFlow's own runtime check)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        on = bench_convrnn._onednn_enabled()
        return "tf-onednn-on" if on else "tf-onednn-off"
    assert backend in bench_predrnn.SETUPS, backend
    return backend


def _frames(shape, seed=0):
    x = np.random.default_rng(seed).standard_normal(shape)
    return x.astype("float32")


@pytest.mark.parametrize("stack", STACKS)
def test_plain_pytorch_peer_computes_our_stack_with_mapped_weights(stack):
    # Tiny sizes; 3 steps so the zigzag memory crosses time steps, a
    # non-square frame so a transposed kernel would show.
    x = _frames((2, 3, 6, 5, 4))
    state, diff = peers_predrnn.check_torch_matches_kc(stack, x, 3, 3)
    assert diff < 1e-4
    # Every weight of the PyTorch model came from ours.
    model = peers_predrnn.torch_model(stack, 4, 3, 3)
    assert set(state) == set(model.state_dict())


def test_a_wrong_weight_mapping_fails_the_check(monkeypatch):
    # The causal LSTM's cell and memory kernels have the same shape: taken
    # for each other, the outputs differ and the check says so.
    mapping = dict(peers_predrnn.KC_TO_TORCH)
    swap = {"cell_kernel": "memory_kernel", "memory_kernel": "cell_kernel"}
    mapping["causal_lstm"] = tuple(
        (module, swap.get(weight, weight))
        for module, weight in mapping["causal_lstm"]
    )
    monkeypatch.setattr(peers_predrnn, "KC_TO_TORCH", mapping)
    with pytest.raises(AssertionError, match="weight mapping"):
        peers_predrnn.check_torch_matches_kc(
            "predrnn++", _frames((1, 3, 5, 5, 2)), 3, 3
        )


def test_reshape_patch_is_predrnns_space_to_depth():
    # One 4x4 frame, patch 2: each output pixel holds its 2x2 patch in
    # row-major order.
    frames = np.arange(16, dtype="float32").reshape(1, 1, 4, 4, 1)
    patched = bench_predrnn.reshape_patch(frames, 2)
    assert patched.shape == (1, 1, 2, 2, 4)
    np.testing.assert_array_equal(patched[0, 0, 0, 0], [0, 1, 4, 5])
    np.testing.assert_array_equal(patched[0, 0, 1, 1], [10, 11, 14, 15])


def test_the_workloads_are_the_issues():
    # predrnn: batch 8, 20 frames of 64x64x1 patched 4x4 (16x16x16), 64
    # filters, kernel 5; teacher forcing over frames [:, :19] -> [:, 1:].
    assert bench_predrnn.WORKLOADS["predrnn"] == (8, 20, 64, 4, 64, 5)
    assert bench_predrnn.SA_WORKLOADS["sa-16"] == (8, 10, 16, 16, 64, 5)
    assert bench_predrnn.SA_WORKLOADS["sa-32"] == (8, 10, 32, 16, 64, 5)
    x, y = bench_predrnn.patched_batch("smoke")
    batch, frames, side, patch, _, _ = bench_predrnn.WORKLOADS["smoke"]
    patched = (side // patch, side // patch, patch * patch)
    assert x.shape == y.shape == (batch, frames - 1, *patched)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    # The default run: every Keras peer in the three setups, the PyTorch
    # peers once in their own setup, SA-ConvLSTM on tf-onednn-on.
    jobs = bench_predrnn.plan(
        bench_predrnn.TABLES,
        bench_predrnn.DEFAULT_SETUPS,
        list(bench_predrnn.PEERS) + list(bench_predrnn.NATIVE_PEERS),
        bench_predrnn.DEFAULT_SA_SETUPS,
        smoke=False,
    )
    assert sorted((w, s, p[0]) for w, s, p in jobs) == sorted(
        [
            ("predrnn", s, p)
            for s in ("tf-onednn-on", "tf-onednn-off", "torch")
            for p in ("kc PredRNN", "kc PredRNN++")
        ]
        + [("predrnn", "torch", "torch PredRNN")]
        + [("predrnn", "torch", "torch PredRNN++")]
        + [
            (w, "tf-onednn-on", p)
            for w in ("sa-16", "sa-32")
            for p in ("kc.ConvLSTM2D", "kc.SAConvLSTM2D")
        ]
    )


def test_smoke_of_this_backend_reports_every_peer(tmp_path):
    # Both tables, every peer once, in this process and this session's
    # setup (the PyTorch peers run here too, after their weight check).
    setup = _session_setup()
    out = tmp_path / "predrnn.md"
    argv = ["--smoke", "--in-process", "--setups", setup, "--out", str(out)]
    assert bench_predrnn.main(argv) == 0
    report = out.read_text()
    with open(tmp_path / "predrnn.json") as f:
        results = json.load(f)
    got = [(r["workload"], r["peer"]) for r in results["rows"]]
    assert got == [
        ("smoke", "kc PredRNN"),
        ("smoke", "kc PredRNN++"),
        ("smoke", "torch PredRNN"),
        ("smoke", "torch PredRNN++"),
        ("sa-smoke", "kc.ConvLSTM2D"),
        ("sa-smoke", "kc.SAConvLSTM2D"),
    ]
    for row in results["rows"]:
        assert row["train_ms"] > 0 and row["rss_mb"] > 0, row
        assert row["step_mb"] >= 0, row
        if row["peer"] in bench_predrnn.NATIVE_PEERS:
            assert row["setup"] == "torch"
            assert row["max_abs_diff_vs_kc"] < 1e-4
        else:
            assert row["setup"] == setup
            assert row["backend"] == keras.backend.backend()
    for peer in list(bench_predrnn.PEERS) + list(bench_predrnn.NATIVE_PEERS):
        assert f"| {peer} | " in report, peer
    assert f"| 8x8 | {setup} | kc.SAConvLSTM2D | " in report
    assert "## SA-ConvLSTM's cost" in report


@pytest.mark.tensorflow_session
def test_smoke_driver_runs_each_setup_in_a_worker_with_its_environment(
    tmp_path,
):
    # The command-line way: a worker per setup, started with its
    # KERAS_BACKEND and TF_ENABLE_ONEDNN_OPTS; plain PyTorch runs in the
    # torch setup's worker and is shown in the TensorFlow column too.
    out = tmp_path / "driver.md"
    command = python(
        SCRIPT,
        "--smoke",
        "--tables",
        "main",
        "--setups",
        "tf-onednn-off",
        "--peers",
        "kc PredRNN,torch PredRNN",
        "--out",
        out,
    )
    proc = run(Job("driver", command, separate_stderr=True), 600)
    assert proc.code == 0, proc.errors[-3000:]
    with open(tmp_path / "driver.json") as f:
        results = json.load(f)
    got = {(r["setup"], r["peer"]): r for r in results["rows"]}
    assert set(got) == {
        ("tf-onednn-off", "kc PredRNN"),
        ("torch", "torch PredRNN"),
    }
    assert got[("tf-onednn-off", "kc PredRNN")]["backend"] == "tensorflow"
    assert got[("tf-onednn-off", "kc PredRNN")]["onednn"] is False
    assert got[("torch", "torch PredRNN")]["torch_threads"] >= 1
    report = out.read_text()
    (row,) = [
        line for line in report.splitlines() if "| torch PredRNN |" in line
    ]
    assert "†" in row
    assert "TF_ENABLE_ONEDNN_OPTS=0, oneDNN off in every worker" in report
