"""The benchmark script keeps working (one tiny iteration; no timings)."""

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
