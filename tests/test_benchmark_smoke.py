"""The benchmark script keeps working (one tiny iteration; no timings)."""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
import bench_convrnn  # noqa: E402
import profile_ops  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "benchmarks", "bench_convrnn.py")


def test_benchmark_smoke_run_prints_a_row_for_every_peer_and_jit_mode():
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--smoke"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [
        line for line in proc.stdout.splitlines() if line.startswith("| smoke")
    ]
    assert len(rows) == 2 * len(bench_convrnn.PEERS)
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        fwd_ms, train_ms = float(cells[3]), float(cells[4])
        assert fwd_ms > 0 and train_ms > 0


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
    proc = subprocess.run(
        [
            sys.executable,
            PROFILE_SCRIPT,
            "--workloads",
            "smoke",
            "--peers",
            "kc.ConvGRU2D,keras.ConvLSTM2D",
            "--steps",
            "1",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
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
