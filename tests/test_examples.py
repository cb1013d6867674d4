"""The example scripts run end to end, and their parts hold their promises.

Both scripts run once with `--quick` (tiny data, one epoch), in
subprocesses started together, on the backend the suite runs on; the tests
check what they write, not how well quick mode learns. The rest tests the
parts in process: the data generators, SSIM against independent values,
and the causality of the next-frame model.
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
next_frame = load_example("next_frame")


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
    names = ("flyby_tracking", "next_frame")
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


def test_next_frame_quick_run_writes_tables_and_figure(quick_runs):
    out, returncode, output = quick_runs["next_frame"]
    assert returncode == 0, output[-3000:]
    assert_png(out / "next_frame.png")

    results = json.loads((out / "next_frame.json").read_text())["results"]
    assert list(results) == list(next_frame.LAYERS)
    for r in results.values():
        assert r["parameters"] > 0 and r["seconds_per_epoch"] > 0
        assert len(r["mse"]) == len(r["ssim"]) == 10
        assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in r["mse"])
        assert all(math.isfinite(v) and -1.0 <= v <= 1.0 for v in r["ssim"])
    reference = json.loads((out / "next_frame.json").read_text())["references"][
        "copy last frame"
    ]
    assert len(reference["mse"]) == len(reference["ssim"]) == 10
    assert all(math.isfinite(v) for v in reference["mse"] + reference["ssim"])
    # The two ConvLSTM2Ds have the same weights, so the same parameters.
    assert (
        results["kc.ConvLSTM2D"]["parameters"]
        == results["keras.ConvLSTM2D"]["parameters"]
    )

    text = (out / "next_frame.md").read_text()
    assert len(markdown_rows(text, "t+")) == 10
    for name in [*next_frame.LAYERS, "copy last frame (reference)"]:
        assert len(markdown_rows(text, name)) == 1


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


def test_moving_digits_stay_in_the_frame_and_keep_their_ink():
    images = next_frame.load_digit_images()
    assert images.shape == (1797, 16, 16)
    frames = next_frame.make_moving_digits(32, images, seed=5, digits=1)
    assert frames.shape == (32, 20, 64, 64, 1)
    assert frames.min() >= 0.0 and frames.max() <= 1.0
    # One digit per sequence, never clipped by the frame's edge: every
    # frame holds exactly the ink of one of the digit images.
    ink = frames.sum(axis=(2, 3, 4))
    np.testing.assert_allclose(ink, ink[:, :1].repeat(20, axis=1), rtol=1e-5)
    assert np.isin(
        np.round(ink[:, 0], 3), np.round(images.sum(axis=(1, 2)), 3)
    ).all()
    # It moves at the set speed, except where it bounces off an edge.
    rows, cols = np.indices((64, 64))
    centre = np.stack(
        [
            (frames[..., 0] * rows).sum(axis=(2, 3)) / ink,
            (frames[..., 0] * cols).sum(axis=(2, 3)) / ink,
        ],
        axis=-1,
    )
    step = np.linalg.norm(np.diff(centre, axis=1), axis=-1)
    low, high = next_frame.SPEED
    assert step.max() <= high + 1.0
    assert np.median(step) >= low - 1.0


# --- SSIM --------------------------------------------------------------------


def test_ssim_of_an_image_with_itself_is_one():
    x = np.random.default_rng(0).uniform(size=(2, 32, 32))
    np.testing.assert_allclose(next_frame.ssim(x, x), [1.0, 1.0], atol=1e-12)


def test_ssim_falls_as_the_noise_grows():
    rng = np.random.default_rng(1)
    x = next_frame.make_moving_digits(1, next_frame.load_digit_images())
    x = x[0, 0, ..., 0]
    values = [
        next_frame.ssim(x, x + sigma * rng.standard_normal(x.shape))
        for sigma in (0.01, 0.05, 0.1, 0.3)
    ]
    assert values == sorted(values, reverse=True)
    assert values[0] > 0.8 and values[-1] < 0.3


def test_ssim_of_two_flat_images_is_the_luminance_term():
    # No variance: the contrast-structure factor is C2 / C2 = 1, leaving
    # (2ab + C1) / (a^2 + b^2 + C1) with C1 = (0.01 * L)^2.
    a, b = 0.2, 0.7
    c1 = (0.01 * 1.0) ** 2
    expected = (2 * a * b + c1) / (a**2 + b**2 + c1)
    got = next_frame.ssim(np.full((20, 20), a), np.full((20, 20), b))
    assert got == pytest.approx(expected, rel=1e-12)


def test_ssim_matches_scikit_image_gaussian_algorithm():
    # skimage.metrics.structural_similarity(x, y, data_range=1,
    # gaussian_weights=True, sigma=1.5, use_sample_covariance=False) as
    # written in scikit-image: scipy.ndimage.gaussian_filter (truncate
    # 3.5, so an 11x11 window), then the mean over the image cropped by
    # the 5-pixel half window. scikit-image itself is not a dependency.
    from scipy import ndimage

    rng = np.random.default_rng(2)
    x = rng.uniform(size=(40, 48))
    y = np.clip(x + 0.2 * rng.standard_normal(x.shape), 0, 1)

    def blur(image):
        return ndimage.gaussian_filter(image, sigma=1.5, truncate=3.5)

    mx, my = blur(x), blur(y)
    vx, vy, vxy = (
        blur(x * x) - mx**2,
        blur(y * y) - my**2,
        blur(x * y) - mx * my,
    )
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * vxy + c2)) / (
        (mx**2 + my**2 + c1) * (vx + vy + c2)
    )
    expected = s[5:-5, 5:-5].mean()
    assert next_frame.ssim(x, y) == pytest.approx(expected, rel=1e-10)


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
    for module in (flyby, next_frame):
        conv = keras.layers.Conv2D(4, 3, strides=2, padding="same")
        ours = module.PerFrame(conv)
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


# --- causality of the next-frame model ---------------------------------------


@pytest.fixture(scope="module")
def observed_frames():
    images = next_frame.load_digit_images()
    sequences = next_frame.make_moving_digits(3, images, seed=7)
    return sequences[:, : next_frame.INPUT_STEPS]


def later_frames_replaced(observed, steps=(1, 5, 9)):
    """`(step, values)`: frames from `step` on replaced by noise."""
    rng = np.random.default_rng(8)
    return [(t, rng.uniform(size=observed[t:].shape)) for t in steps]


@pytest.fixture(scope="module")
def next_frame_models():
    """One small encoder-forecaster per recurrent layer class."""
    models = {}
    for name, layer_class in next_frame.LAYERS.items():
        keras.utils.set_random_seed(0)
        models[name] = next_frame.build_model(layer_class, filters=4)
    return models


def encoder_outputs(model):
    """The encoder's output sequence: one output per observed frame."""
    return keras.Model(model.input, model.get_layer("encoder").output[0])


@pytest.mark.parametrize("name", list(next_frame.LAYERS))
def test_next_frame_encoder_at_step_t_sees_no_later_frame(
    name, next_frame_models, observed_frames
):
    encoder = encoder_outputs(next_frame_models[name])
    changes = later_frames_replaced(observed_frames[0])
    per_step = changes_per_step(encoder, observed_frames[0], changes)
    for (t, _), change in zip(changes, per_step):
        assert change[:t].max() < 1e-6, f"steps < {t} changed: {change}"
        assert change[t:].min() > 1e-6  # the check can see a change


def test_causality_check_catches_a_conv3d_with_same_padding_over_time(
    next_frame_models, observed_frames
):
    # The keras.io ConvLSTM example's last layer: a Conv3D whose 3-frame
    # kernel, "same"-padded, mixes frame t + 1 into the output at t.
    encoder = encoder_outputs(next_frame_models["keras.ConvLSTM2D"])
    leaky_output = keras.layers.Conv3D(1, 3, padding="same")(encoder.output)
    leaky = keras.Model(encoder.input, leaky_output)
    changes = later_frames_replaced(observed_frames[0], steps=(5,))
    (change,) = changes_per_step(leaky, observed_frames[0], changes)
    assert change[4] > 1e-6  # step 4 sees frame 5


def test_next_frame_model_reads_only_the_observed_frames(
    next_frame_models, observed_frames
):
    model = next_frame_models["kc.ConvGRU2D"]
    # One input, the 10 observed frames: the 10 frames to predict can
    # only be the target.
    assert len(model.inputs) == 1
    assert tuple(model.inputs[0].shape[1:]) == (10, 64, 64, 1)
    assert tuple(model.output.shape[1:]) == (10, 64, 64, 1)
    # Each sequence's forecast depends on that sequence alone, not on
    # the other sequences of its batch.
    alone = keras.ops.convert_to_numpy(model(observed_frames[:1]))
    others = observed_frames.copy()
    others[1:] = observed_frames[1:][:, ::-1]
    together = keras.ops.convert_to_numpy(model(others))
    np.testing.assert_allclose(together[:1], alone, rtol=1e-5, atol=1e-6)
