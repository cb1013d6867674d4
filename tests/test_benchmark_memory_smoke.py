"""The memory benchmark keeps working: one tiny measurement per code path,
in this process (a smoke run's numbers mean nothing and are not checked),
and its fit and formula on numbers known in advance."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
import bench_memory  # noqa: E402

# Three peers cover every code path: hoisted and stepped, GRU and LSTM,
# ours and Keras's.
SMOKE_PEERS = ["kc.ConvGRU2D", "kc.ConvLSTM2D stepped", "keras.ConvLSTM2D"]


# A TensorFlow-backend script: its smoke run happens once per CI run, in
# the TensorFlow session (see conftest.py).
@pytest.mark.tensorflow_session
def test_memory_smoke_run_reports_a_row_for_each_peer_it_ran(tmp_path):
    out = tmp_path / "memory.md"
    peers = ",".join(SMOKE_PEERS)
    assert (
        bench_memory.main(["--smoke", "--peers", peers, "--out", str(out)]) == 0
    )
    report = out.read_text()
    with open(tmp_path / "memory.json") as f:
        results = json.load(f)
    assert [r["peer"] for r in results["rows"]] == SMOKE_PEERS
    for row in results["rows"]:
        assert f"| smoke | {row['peer']} |" in report
        assert row["peak_mb"] > 0 and row["predicted_mb"] > 0
    assert results["environment"]["backend"] == "tensorflow"


def test_fit_recovers_the_slope_in_floats_per_pixel_and_step():
    # 1,000 floats per pixel-step: 4,000 bytes x BATCH x 32 x 32 per step.
    per_step = 4000 * bench_memory.BATCH * 32 * 32 / 2**20
    rows = [
        {
            "sweep": "steps",
            "peer": "kc.ConvGRU2D",
            "steps": steps,
            "side": 32,
            "delta_mb": 50 + per_step * steps,
            "predicted_mb": per_step * steps / 2,
        }
        for steps in (10, 20, 40, 80)
    ]
    (fit,) = bench_memory.summarize(rows)
    assert fit["floats_per_pixel_step"] == pytest.approx(1000)
    assert fit["formula_floats_per_pixel_step"] == pytest.approx(500)
    assert fit["intercept_mb"] == pytest.approx(50)
    assert fit["max_residual_mb"] == pytest.approx(0, abs=1e-9)


def test_formula_counts_the_loop_and_the_sequence_tensors():
    f, c = bench_memory.FILTERS, bench_memory.CHANNELS
    # GRU, hoisted: 8F in the loop, the 3F projection, input C, output F.
    assert bench_memory.saved_floats_per_pixel("kc.ConvGRU2D", True) == (
        8 * f + 3 * f + c + f
    )
    # LSTM, stepped: 7F and the frame x_t in the loop, input C, output F.
    assert bench_memory.saved_floats_per_pixel(
        "kc.ConvLSTM2D stepped", False
    ) == (7 * f + c + c + f)
    # Linear in steps and in pixels.
    one = bench_memory.predicted_mb("kc.ConvLSTM2D stepped", 10, 16)
    assert bench_memory.predicted_mb(
        "kc.ConvLSTM2D stepped", 20, 16
    ) == pytest.approx(2 * one)
    assert bench_memory.predicted_mb(
        "kc.ConvLSTM2D stepped", 10, 32
    ) == pytest.approx(4 * one)


@pytest.mark.tensorflow_session
def test_memory_shape_option_sets_batch_channels_and_filters(
    tmp_path, monkeypatch
):
    for name in ("BATCH", "CHANNELS", "FILTERS"):
        monkeypatch.setattr(bench_memory, name, getattr(bench_memory, name))
    out = tmp_path / "memory.md"
    argv = ["--smoke", "--peers", "kc.ConvLSTM2D stepped", "--out", str(out)]
    assert bench_memory.main(argv + ["--shape", "3,5,7"]) == 0
    assert "batch 3, 5 input channels, 7 filters" in out.read_text()
    assert (bench_memory.BATCH, bench_memory.CHANNELS) == (3, 5)
    # The formula follows the shape: 7 filters, 5 channels.
    assert bench_memory.saved_floats_per_pixel(
        "kc.ConvLSTM2D stepped", False
    ) == bench_memory.saved_floats_per_pixel(
        "kc.ConvLSTM2D stepped", False, channels=5, f=7
    )


@pytest.mark.parametrize("shape", ["2,4", "2,0,16", "a,b,c"])
def test_memory_shape_option_rejects_a_bad_shape(shape, capsys):
    with pytest.raises(SystemExit):
        bench_memory.main(["--smoke", "--shape", shape])
    assert repr(shape) in capsys.readouterr().err
