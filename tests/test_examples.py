"""The example scripts run end to end, and their parts hold their promises.

Both scripts run once with `--quick` (tiny data, one epoch), in
subprocesses started together, on the backend the suite runs on; the tests
check what they write, not how well quick mode learns. The rest tests the
parts in process: the data generators (Moving MNIST's physics) and what
each model may see (causality).
"""

import importlib.util
import json
import math
import os
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import Job
from helpers import python
from helpers import run_parallel

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(
        f"example_{name}", EXAMPLES / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


flyby = load_example("flyby_tracking")
moving_mnist = load_example("moving_mnist")


# --- the scripts, end to end -------------------------------------------------


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory):
    """Runs both scripts with --quick at once; name -> (out, rc, output).

    XLA (the JAX backend) compiles without its backend optimisations:
    quick mode's few steps take less time than optimising them would.
    """
    xla_flags = os.environ.get("XLA_FLAGS", "")
    env = {
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "XLA_FLAGS": f"{xla_flags} --xla_backend_optimization_level=0",
    }
    names = ("flyby_tracking", "moving_mnist")
    outs = {name: tmp_path_factory.mktemp(name) for name in names}
    jobs = [
        Job(
            name,
            python(EXAMPLES / f"{name}.py", "--quick", "--out", outs[name]),
            env,
        )
        for name in names
    ]
    # Up to 600 s each, as when each was waited for in turn.
    results = run_parallel(jobs, 600 * len(jobs), stop_on_failure=False)
    return {
        name: (outs[name], results[name].code, results[name].output)
        for name in names
    }


def assert_png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path


def markdown_rows(text, first_cell):
    """The cells of the table rows whose first cell starts `first_cell`."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].startswith(first_cell):
            rows.append(cells)
    return rows


def test_flyby_quick_run_writes_table_figure_and_reloadable_model(
    quick_runs,
):
    out, returncode, output = quick_runs["flyby_tracking"]
    assert returncode == 0, output[-3000:]
    assert "reloaded, same predictions" in output
    assert_png(out / "flyby_tracking.png")
    assert zipfile.is_zipfile(out / "flyby_convgru2d.keras")

    results = json.loads((out / "flyby_tracking.json").read_text())
    assert set(results["iou"]) == {"per-frame CNN", "ConvGRU2D"}
    for scores in results["iou"].values():
        assert len(scores) == 8
        assert all(math.isfinite(s) and 0.0 <= s <= 1.0 for s in scores)

    rows = markdown_rows((out / "flyby_tracking.md").read_text(), "t")
    assert [r[0] for r in rows] == [f"t{t}" for t in range(8)]
    for row in rows:
        values = [float(v) for v in row[1:]]
        assert len(values) == 2
        assert all(0.0 <= v <= 1.0 for v in values)


def test_moving_mnist_quick_run_writes_tables_json_and_figure(quick_runs):
    out, returncode, output = quick_runs["moving_mnist"]
    assert returncode == 0, output[-3000:]
    assert_png(out / "moving_mnist.png")

    results = json.loads((out / "moving_mnist.json").read_text())
    # Every model, then the floor, each with 10 lead times per score.
    assert list(results) == [*moving_mnist.MODELS, "copy_last"]
    for scores in results.values():
        assert set(scores) == {"mse", "mae", "ssim", "psnr"}
        assert all(len(v) == 10 for v in scores.values())
        # Sums over a frame's 4,096 pixels of errors in [0, 1] (quick
        # mode's untrained heads are not clipped, so allow some overshoot).
        assert all(math.isfinite(v) and 0.0 <= v for v in scores["mse"])
        assert all(math.isfinite(v) and 0.0 <= v for v in scores["mae"])
        assert all(-1.0 <= v <= 1.0 for v in scores["ssim"])
        assert all(math.isfinite(v) for v in scores["psnr"])
    run = json.loads((out / "moving_mnist_run.json").read_text())
    for name in moving_mnist.MODELS:
        r = run["runs"][name]
        assert r["parameters"] > 0 and r["iterations"] == 2
        assert r["seconds"] > 0

    text = (out / "moving_mnist.md").read_text()
    # The summary, a row per model; four per-lead tables, a row per lead.
    for name in [*moving_mnist.MODELS, "copy_last"]:
        rows = [r for r in markdown_rows(text, name) if r[0] == name]
        assert len(rows) == 1, name
    assert len(markdown_rows(text, "t+")) == 4 * 10


# --- the data --------------------------------------------------------------


def test_flyby_data_is_seeded_and_one_object_moves_in_every_frame():
    frames, masks = flyby.make_flyby(16, steps=8, seed=3)
    again, _ = flyby.make_flyby(16, steps=8, seed=3)
    np.testing.assert_array_equal(frames, again)
    assert frames.shape == masks.shape == (16, 8, 64, 64, 1)
    assert set(np.unique(masks)) == {0.0, 1.0}

    area = masks.sum(axis=(2, 3, 4))
    low, high = flyby.RADIUS
    assert area.min() >= math.pi * (low - 1) ** 2
    assert area.max() <= math.pi * (high + 1) ** 2
    rows, cols = np.indices((64, 64))
    centre = np.stack(
        [
            (masks[..., 0] * rows).sum(axis=(2, 3)) / area,
            (masks[..., 0] * cols).sum(axis=(2, 3)) / area,
        ],
        axis=-1,
    )
    step = np.linalg.norm(np.diff(centre, axis=1), axis=-1)
    assert step.min() > 1.0  # the object moves every frame

    # Faint: the object adds about CONTRAST to the clutter's unit spread.
    inside = frames[masks > 0].mean()
    outside = frames[masks == 0].mean()
    assert 0.3 * flyby.CONTRAST < inside - outside < 1.5 * flyby.CONTRAST
    assert 0.8 < frames[masks == 0].std() < 1.3


@pytest.fixture(scope="module")
def mnist_digits():
    images, labels = moving_mnist.load_mnist()
    return images, labels


def test_mnist_digits_are_mlxtends_real_digits_split_disjointly(mnist_digits):
    images, labels = mnist_digits
    assert images.shape == (5000, 28, 28) and images.dtype == np.float32
    assert images.min() == 0.0 and images.max() == 1.0
    assert set(np.unique(labels)) == set(range(10))
    # Real handwriting, not blocks: grey levels between 0 and 1 and
    # about a fifth of the pixels inked (MNIST's ~19 %).
    assert len(np.unique(images)) > 200
    assert 0.12 < (images > 0).mean() < 0.26
    train, test = moving_mnist.split_digits(images, seed=0)
    assert len(train) == 4000 and len(test) == 1000
    seen = {image.tobytes() for image in train}
    assert not any(image.tobytes() in seen for image in test)


def test_trajectories_move_at_constant_speed_and_bounce_off_the_edges():
    rng = np.random.default_rng(3)
    corners = moving_mnist.trajectories(rng, 500, steps=40)
    free = 64 - 28
    assert corners.shape == (500, 40, 2)
    assert corners.min() == 0 and corners.max() == free
    # 0.1 of the free canvas per frame: 3.6 pixels (truncated corners).
    speed = 0.1 * free
    step = np.diff(corners, axis=1)
    assert np.abs(step).max() <= math.ceil(speed)
    # Over 5 frames that touch no edge the motion is a straight line of
    # 5 * 3.6 pixels (each coordinate truncated: within sqrt(2)).
    at_edge = (corners == 0) | (corners == free)
    k = 5
    for t in range(0, 40 - k):
        free_run = ~at_edge[:, t : t + k + 1].any(axis=(1, 2))
        distance = np.linalg.norm(
            corners[free_run, t + k] - corners[free_run, t], axis=-1
        )
        assert np.all(np.abs(distance - k * speed) <= math.sqrt(2) + 1e-9)
    # A coordinate that reaches an edge (clipped onto it) turns back with
    # the same speed: where it arrived moving 2 pixels or more per frame
    # (its speed along the axis is then over 1 pixel), three frames later
    # it is 2 pixels or more away from the edge (at least two of them
    # after the bounce: a corner of 0 can still be short of the edge),
    # not stuck on it nor wrapped around to the other side.
    for edge, inward in ((0, 1), (free, -1)):
        seq, t, axis = np.nonzero(corners[:, 1:-3] == edge)
        t = t + 1
        arrived = corners[seq, t - 1, axis] - edge
        fast = np.abs(arrived) >= 2
        assert fast.sum() > 50
        away = inward * (corners[seq, t + 3, axis] - edge)
        assert np.all(away[fast] >= 2), away[fast].min()


def test_sequences_are_two_digits_pasted_with_a_pixelwise_maximum(
    mnist_digits,
):
    images, _ = mnist_digits
    digits = images[:50]
    frames = moving_mnist.make_sequences(np.random.default_rng(5), digits, 8)
    assert frames.shape == (8, 20, 64, 64, 1) and frames.dtype == np.float32
    assert 0.0 <= frames.min() and frames.max() <= 1.0
    # The same draws, replayed: which digits, and where, per sequence.
    rng = np.random.default_rng(5)
    drawn = []
    for _ in range(2):
        index = rng.integers(0, len(digits), 8)
        drawn.append((index, moving_mnist.trajectories(rng, 8)))
    for s in range(8):
        for t in (0, 7, 19):
            expected = np.zeros((64, 64), "float32")
            for index, corners in drawn:
                r, c = corners[s, t]
                patch = expected[r : r + 28, c : c + 28]
                np.maximum(patch, digits[index[s]], out=patch)
            np.testing.assert_array_equal(frames[s, t, ..., 0], expected)


def test_training_batches_are_fresh_every_epoch_and_reproducible(
    mnist_digits,
):
    images, _ = mnist_digits
    data = moving_mnist.TrainingSequences(
        images[:100], batches=3, split=moving_mnist.observed_and_future
    )
    x, y = data[1]
    assert x.shape == y.shape == (16, 10, 64, 64, 1)
    np.testing.assert_array_equal(data[1][0], x)
    assert not np.array_equal(data[2][0], x)
    data.on_epoch_end()
    assert not np.array_equal(data[1][0], x)


# --- what each model may see ------------------------------------------------


def changes_per_step(model, sequence, changes):
    """Runs `sequence` and one variant per `(step, values)` in `changes`
    (frames from `step` on replaced by `values`); returns, per variant,
    the largest change of the output at every step.

    Each sequence runs in a call of its own, at the same batch position:
    oneDNN's float32 results for identical inputs differ in the last bits
    with a sample's position in the batch (seen on AMD EPYC CPUs, growing
    to ~1e-6 over a recurrence), so sequences compared side by side in
    one batch would show "changes" that are only rounding.
    """

    def run(frames):
        return keras.ops.convert_to_numpy(model(frames[np.newaxis]))[0]

    original = run(sequence)
    per_step = []
    for step, values in changes:
        changed = sequence.copy()
        changed[step:] = values
        difference = np.abs(run(changed) - original)
        per_step.append(difference.reshape(len(original), -1).max(axis=-1))
    return np.stack(per_step)


def test_per_frame_wrapper_equals_keras_time_distributed():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 9, 9, 2)).astype("float32")
    conv = keras.layers.Conv2D(4, 3, strides=2, padding="same")
    ours = flyby.PerFrame(conv)
    keras_td = keras.layers.TimeDistributed(
        keras.layers.Conv2D(4, 3, strides=2, padding="same")
    )
    ours.build(x.shape)
    keras_td.build(x.shape)
    for mine, theirs in zip(ours.weights, keras_td.weights):
        theirs.assign(mine)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ours(x)),
        keras.ops.convert_to_numpy(keras_td(x)),
        rtol=1e-5,
        atol=1e-5,
    )


def test_flyby_cnn_sees_one_frame_and_convgru_the_frames_so_far():
    frames, _ = flyby.make_flyby(1, steps=8, seed=4)
    sequence = frames[0]
    # Frame 3 alone replaced by other clutter.
    values = sequence[3:].copy()
    values[0] = np.random.default_rng(4).normal(size=values[0].shape)
    for recurrent in (False, True):
        keras.utils.set_random_seed(0)
        model = flyby.build_model(recurrent, filters=4)
        (change,) = changes_per_step(model, sequence, [(3, values)])
        assert change[:3].max() < 1e-6  # neither model looks ahead
        assert change[3] > 1e-6
        if recurrent:
            assert change[4:].min() > 1e-6  # the ConvGRU remembers frame 3
        else:
            assert change[4:].max() < 1e-6  # the CNN forgets it at once


# --- causality of the Moving MNIST models ------------------------------------


@pytest.fixture(scope="module")
def test_sequences():
    images, _ = moving_mnist.load_mnist()
    rng = np.random.default_rng(7)
    return moving_mnist.make_sequences(rng, images[:20], 3)


def later_frames_replaced(observed, steps=(1, 5, 9)):
    """`(step, values)`: frames from `step` on replaced by noise."""
    rng = np.random.default_rng(8)
    return [(t, rng.uniform(size=observed[t:].shape)) for t in steps]


@pytest.fixture(scope="module")
def mnist_models():
    """Every model of the study, 2 filters per cell, built, with random
    weights large enough that every frame moves every later output."""
    models = {}
    rng = np.random.default_rng(9)
    for name in moving_mnist.MODELS:
        keras.utils.set_random_seed(0)
        model, _ = moving_mnist.build_model(name, width=2)
        model.build((None, 10, 64, 64, 1))
        for weight in model.trainable_weights:
            weight.assign(rng.normal(scale=0.3, size=weight.shape))
        models[name] = model
    return models


ENCODER_FORECASTERS = ("ConvLSTM", "ConvGRU")
NEXT_FRAME_MODELS = tuple(
    n for n in moving_mnist.MODELS if n not in ENCODER_FORECASTERS
)


@pytest.mark.parametrize("name", ENCODER_FORECASTERS)
def test_encoder_at_step_t_sees_no_later_frame(
    name, mnist_models, test_sequences
):
    model = mnist_models[name]
    observed = test_sequences[0, :10]
    model(observed[np.newaxis])

    def encoder(frames):
        # Every scale's encoder outputs, side by side.
        return keras.ops.concatenate(
            [
                keras.ops.reshape(sequence, (1, 10, -1))
                for sequence, _ in model.encode(frames)
            ],
            axis=-1,
        )

    changes = later_frames_replaced(observed)
    per_step = changes_per_step(encoder, observed, changes)
    for (t, _), change in zip(changes, per_step):
        assert change[:t].max() < 1e-6, f"steps < {t} changed: {change}"
        assert change[t:].min() > 1e-6  # the check can see a change


@pytest.mark.parametrize("name", NEXT_FRAME_MODELS)
def test_next_frame_prediction_sees_only_the_frames_before_it(
    name, mnist_models, test_sequences
):
    # Output j predicts frame j + 1 from frames 0..j: changing frames from
    # t on leaves outputs 0..t-1 alone.
    model = mnist_models[name]
    observed = test_sequences[0, :10]
    changes = later_frames_replaced(observed)
    per_step = changes_per_step(model, observed, changes)
    for (t, _), change in zip(changes, per_step):
        assert change[:t].max() < 1e-6, f"outputs < {t} changed: {change}"
        assert change[t:].min() > 1e-6  # the check can see a change


def test_in_training_the_true_next_frame_is_only_the_next_steps_input(
    mnist_models, test_sequences
):
    # Training reads all 20 frames (scheduled sampling; at iteration 0
    # PredRNN's ε is 1: every true frame); still output j must not see
    # frame j + 1.
    model = mnist_models["PredRNN"]
    sequence = test_sequences[0]

    def step(frames):
        return model(frames, training=True)

    changes = later_frames_replaced(sequence, steps=(4, 12, 18))
    per_step = changes_per_step(step, sequence, changes)
    for (t, _), change in zip(changes, per_step):
        assert change[:t].max() < 1e-6, f"outputs < {t} changed: {change}"
        assert change[t:].min() > 1e-6


def test_causality_check_catches_a_conv3d_with_same_padding_over_time(
    mnist_models, test_sequences
):
    # The keras.io ConvLSTM example's last layer: a Conv3D whose 3-frame
    # kernel, "same"-padded, mixes frame t + 1 into the output at t.
    model = mnist_models["PredRNN"]
    observed = test_sequences[0, :10]
    conv = keras.layers.Conv3D(1, 3, padding="same")

    def leaky(frames):
        outputs = model(frames)[:, :10]
        return conv(keras.ops.concatenate([frames, outputs], axis=-1))

    changes = later_frames_replaced(observed, steps=(5,))
    (change,) = changes_per_step(leaky, observed, changes)
    assert change[4] > 1e-6  # step 4 sees frame 5


@pytest.mark.parametrize("name", ["ConvGRU", "PredRNN"])
def test_forecasts_read_only_the_observed_frames_of_their_sequence(
    name, mnist_models, test_sequences
):
    model = mnist_models[name]
    observed = test_sequences[:, :10]
    output = model(observed)
    assert output.shape[2:] == (64, 64, 1)
    # Each sequence's forecast depends on that sequence alone, not on
    # the other sequences of its batch (a leak would move it by far more
    # than the tolerance, which covers float32 rounding across batch
    # sizes on every CPU path).
    alone = keras.ops.convert_to_numpy(model(observed[:1]))
    others = observed.copy()
    others[1:] = observed[1:][:, ::-1]
    together = keras.ops.convert_to_numpy(model(others))
    np.testing.assert_allclose(together[:1], alone, rtol=1e-5, atol=1e-5)
