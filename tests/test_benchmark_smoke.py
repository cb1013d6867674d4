"""The benchmark script keeps working (one tiny iteration; no timings)."""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
import bench_convrnn  # noqa: E402

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
    for result in results:
        ms = result["op_ms"]
        assert ms["conv forward"] > 0, result
        assert ms["conv grad wrt kernel"] > 0, result
        assert result["wall_ms"] > 0
