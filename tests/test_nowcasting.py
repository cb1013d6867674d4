"""The nowcasting example: its quick mode end to end, its data and scores.

The script runs once with `--quick` (tiny data, one epoch) in a
subprocess, on the backend the suite runs on; the test checks what it
writes, not how well quick mode learns. The rest tests the parts in
process: the rain fields move as the docs say (measured on single rain
cells, from the frames), the CSI against hand-counted events, and the two
default models' parameter counts.
"""

import importlib.util
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import Job
from helpers import python
from helpers import run

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(
        f"example_{name}", EXAMPLES / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


nowcasting = load_example("nowcasting")


def test_quick_run_writes_tables_and_figure(tmp_path):
    # XLA (the JAX backend) compiles without its backend optimisations:
    # quick mode's one step takes less time than optimising it would.
    xla_flags = os.environ.get("XLA_FLAGS", "")
    env = {
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "XLA_FLAGS": f"{xla_flags} --xla_backend_optimization_level=0",
    }
    command = python(EXAMPLES / "nowcasting.py", "--quick", "--out", tmp_path)
    result = run(Job("nowcasting", command, env), 600)
    assert result.code == 0, result.output[-3000:]
    figure = tmp_path / "nowcasting.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    written = json.loads((tmp_path / "nowcasting.json").read_text())
    assert list(written["results"]) == ["TrajGRU2D", "ConvGRU2D"]
    keys = ["mse"] + [f"csi@{t}" for t in nowcasting.THRESHOLDS]
    for name, r in {**written["results"], **written["references"]}.items():
        for key in keys:
            assert len(r[key]) == 10, (name, key)
        assert all(math.isfinite(v) and v >= 0 for v in r["mse"]), name
        for key in keys[1:]:
            assert all(math.isnan(v) or 0 <= v <= 1 for v in r[key]), name
    for r in written["results"].values():
        assert r["parameters"] > 0 and r["training_seconds"] > 0

    table = (tmp_path / "nowcasting.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| t+")]
    assert len(rows) == 10
    for name in ["TrajGRU2D", "ConvGRU2D", "persistence (reference)"]:
        assert any(line.startswith(f"| {name} |") for line in table.split("\n"))


# --- the data ----------------------------------------------------------------


def test_rain_is_seeded_and_in_range():
    frames, _ = nowcasting.make_rain(3, seed=4)
    again, _ = nowcasting.make_rain(3, seed=4)
    np.testing.assert_array_equal(frames, again)
    assert frames.shape == (3, 15, 64, 64, 1)
    assert frames.min() >= 0.0 and frames.max() <= 1.0


def test_single_rain_cells_move_two_to_six_pixels_per_frame_and_turn(
    monkeypatch,
):
    # One cell per sequence: its centroid is its centre while it is well
    # inside the frame, so the frames show how fast it moves.
    monkeypatch.setattr(nowcasting, "CELLS", 1)
    monkeypatch.setattr(nowcasting, "DOMAIN", (20.0, 44.0))
    monkeypatch.setattr(nowcasting, "RADIUS", (3.0, 3.0))
    frames, (_, omega, _) = nowcasting.make_rain(40, seed=6)
    rain = frames[..., 0].astype("float64")
    rows, cols = np.indices(rain.shape[-2:])
    mass = rain.sum(axis=(2, 3))
    centre = np.stack(
        [
            (rain * rows).sum(axis=(2, 3)) / np.maximum(mass, 1e-12),
            (rain * cols).sum(axis=(2, 3)) / np.maximum(mass, 1e-12),
        ],
        axis=-1,
    )
    # Well inside: 4 radii from every edge, and bright enough to locate.
    peak = rain.max(axis=(2, 3))
    inside = np.all((centre > 16) & (centre < 47), axis=-1) & (peak > 0.05)
    both = inside[:, 1:] & inside[:, :-1]
    step = np.diff(centre, axis=1)
    speed = np.linalg.norm(step, axis=-1)[both]
    assert both.sum() > 100
    low, high = nowcasting.SPEED
    assert low - 0.1 <= speed.min() and speed.max() <= high + 0.1
    # The paths turn at the rotation's angular speed.
    three = both[:, 1:] & both[:, :-1]
    heading = np.arctan2(step[..., 0], step[..., 1])
    turn = np.angle(np.exp(1j * np.diff(heading, axis=1)))
    turn_rate = np.abs(turn)[three]
    expected = np.repeat(np.abs(omega)[:, None], turn.shape[1], 1)[three]
    np.testing.assert_allclose(turn_rate, expected, atol=0.01)


# --- the scores --------------------------------------------------------------


def test_csi_counts_hits_misses_and_false_alarms_per_lead_time():
    truth = np.zeros((2, 2, 2, 2, 1), "float32")
    predicted = np.zeros_like(truth)
    # Lead 0: 2 hits, 1 miss, 1 false alarm -> 2 / 4.
    truth[0, 0, 0, 0] = truth[0, 0, 0, 1] = truth[1, 0, 1, 1] = 0.8
    predicted[0, 0, 0, 0] = predicted[0, 0, 0, 1] = 0.6
    predicted[1, 0, 0, 0] = 0.9
    # Lead 1: no event at all in either field -> undefined.
    csi = nowcasting.scores(predicted, truth)["csi@0.5"]
    assert csi[0] == pytest.approx(0.5)
    assert math.isnan(csi[1])
    # HSS of lead 0 by hand: a=2, b=1, c=1, d=4 of n=8.
    hss = nowcasting.scores(predicted, truth)["hss@0.5"][0]
    expected = 2 * (2 * 4 - 1 * 1) / ((2 + 1) * (1 + 4) + (2 + 1) * (1 + 4))
    assert hss == pytest.approx(expected)


@pytest.mark.tensorflow_session  # the same count on every backend
def test_default_models_have_about_the_same_number_of_parameters():
    counts = {
        name: nowcasting.build_model(
            name, spec["filters"], spec["links"]
        ).count_params()
        for name, spec in nowcasting.MODELS.items()
    }
    traj, conv = counts["TrajGRU2D"], counts["ConvGRU2D"]
    assert abs(traj - conv) / conv < 0.02, counts
