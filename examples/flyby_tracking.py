"""Fly-by tracking: a ConvGRU finds a small drone that no single frame shows.

Each sequence is a cluttered, slowly changing textured scene that a small,
low-contrast object crosses on a smooth random path. In one frame the
object looks like any of the texture's blobs, so a network that sees one
frame at a time can hardly find it; over a few frames it is the only thing
that moves, and a convolutional GRU learns to separate it from the
background.

Two models are trained the same way (Keras `fit`, weighted per-pixel
binary cross-entropy plus soft Dice): a per-frame convolutional network
(per-frame convolutions, no recurrence) and the same backbone with
its temporal layers replaced by `keras_convgru.ConvGRU2D`. The script prints
their intersection over union (IoU, threshold 0.5, pooled over held-out
sequences) at every time step as a markdown table, draws the figure
(top left: the ConvGRU's output t0..t7, top right: the ground truth,
bottom: the input frames), saves the ConvGRU as `.keras`, loads it back and
checks that its predictions are unchanged (exit status 1 if not).

Everything is generated here with NumPy (seeded, nothing is downloaded) and
the layers use `keras.ops` only, so it runs on any Keras backend:

    KERAS_BACKEND=tensorflow python examples/flyby_tracking.py
    python examples/flyby_tracking.py --quick --out /tmp/flyby
"""

import argparse
import json
import math
import os
import time

import keras
import numpy as np
from keras import ops

import keras_convgru as kc

FRAME_SIZE = 64

# The scene: a fixed clutter texture (unit standard deviation) that changes
# a little from frame to frame, plus sensor noise. The object is fainter
# than the clutter, so one frame does not give it away.
CLUTTER_SCALE = 1.5  # Gaussian correlation length of the texture, pixels
CLUTTER_CHANGE = 0.2  # std of the per-frame change of the texture
SENSOR_NOISE = 0.1  # std of the white noise added to every frame
CONTRAST = 0.8  # object brightness above the local background
RADIUS = (2.0, 3.0)  # object radius range, pixels
SPEED = (3.0, 5.0)  # pixels per frame
TURN = 0.15  # max change of heading per frame, radians


def _smooth_noise(rng, shape, scale):
    """White noise low-pass filtered with a Gaussian of `scale` pixels,
    normalised to unit standard deviation (per image)."""
    white = rng.standard_normal(shape, dtype="float32")
    rows = np.fft.fftfreq(shape[-2])[:, None]
    cols = np.fft.rfftfreq(shape[-1])[None, :]
    gain = np.exp(-2.0 * (np.pi * scale) ** 2 * (rows**2 + cols**2))
    spectrum = np.fft.rfft2(white) * gain.astype("float32")
    smooth = np.fft.irfft2(spectrum, s=shape[-2:]).astype("float32")
    smooth -= smooth.mean(axis=(-2, -1), keepdims=True)
    smooth /= smooth.std(axis=(-2, -1), keepdims=True)
    return smooth


def _paths(rng, num_sequences, steps):
    """Smooth random paths `(num_sequences, steps, 2)` (row, col), centred
    on the middle step so that the object crosses the scene."""
    middle = rng.uniform(0.3, 0.7, (num_sequences, 2)) * FRAME_SIZE
    heading0 = rng.uniform(0, 2 * np.pi, num_sequences)
    turn = rng.uniform(-TURN, TURN, num_sequences)
    speed = rng.uniform(*SPEED, num_sequences)
    # The heading turns at a constant rate; the speed is constant.
    offsets = np.arange(steps) - (steps - 1) / 2.0
    heading = heading0[:, None] + turn[:, None] * offsets[None, :]
    velocity = speed[:, None, None] * np.stack(
        [np.sin(heading), np.cos(heading)], axis=-1
    )
    # Positions: integrate the velocity outwards from the middle.
    steps_from_middle = np.cumsum(velocity, axis=1)
    position = steps_from_middle - steps_from_middle[:, [steps // 2]]
    position += middle[:, None, :]
    return np.clip(position, 2.0, FRAME_SIZE - 3.0)


def make_flyby(num_sequences, steps=8, seed=0):
    """Generates fly-by sequences and their per-frame object masks.

    Returns:
        `(frames, masks)`, float32 arrays of shape
        `(num_sequences, steps, FRAME_SIZE, FRAME_SIZE, 1)`. `frames` are
        roughly zero-mean with unit standard deviation; `masks` are 1 on
        the object's pixels, 0 elsewhere.
    """
    rng = np.random.default_rng(seed)
    size = FRAME_SIZE
    clutter = _smooth_noise(rng, (num_sequences, 1, size, size), CLUTTER_SCALE)
    change = _smooth_noise(
        rng, (num_sequences, steps, size, size), CLUTTER_SCALE
    )
    sensor = rng.standard_normal((num_sequences, steps, size, size), "float32")
    scene = clutter + CLUTTER_CHANGE * change + SENSOR_NOISE * sensor

    centre = _paths(rng, num_sequences, steps).astype("float32")
    radius = rng.uniform(*RADIUS, (num_sequences, 1, 1, 1)).astype("float32")
    grid = np.arange(size, dtype="float32")
    distance = np.sqrt(
        (grid[None, None, :, None] - centre[..., 0, None, None]) ** 2
        + (grid[None, None, None, :] - centre[..., 1, None, None]) ** 2
    )
    # An anti-aliased disk: coverage of each pixel by the object.
    coverage = np.clip(radius + 0.5 - distance, 0.0, 1.0)
    masks = (distance <= radius).astype("float32")
    frames = scene + CONTRAST * coverage
    return (
        frames[..., None].astype("float32"),
        masks[..., None].astype("float32"),
    )


# --- models ------------------------------------------------------------------


BATCH_SIZE = 8
OBJECT_WEIGHT = 10.0  # weight of object pixels in the cross-entropy


@keras.saving.register_keras_serializable(package="flyby_tracking")
def detection_loss(y_true, y_pred):
    """Weighted per-pixel binary cross-entropy plus soft Dice per frame.

    The object covers about 0.5% of a frame. Unweighted, the cheapest
    answer is "background everywhere", and training can sit on that
    plateau for epochs; weighting the object's pixels by `OBJECT_WEIGHT`
    and adding the Dice term (which only an overlap lowers) gets every
    seed we tried off it within the first two epochs.
    """
    p = ops.clip(y_pred, 1e-7, 1.0 - 1e-7)
    bce = -ops.mean(
        OBJECT_WEIGHT * y_true * ops.log(p) + (1.0 - y_true) * ops.log(1.0 - p)
    )
    axes = (2, 3, 4)
    overlap = ops.sum(y_true * y_pred, axis=axes)
    total = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes)
    dice = (2.0 * overlap + 1.0) / (total + 1.0)
    return bce + ops.mean(1.0 - dice)


@keras.saving.register_keras_serializable(package="flyby_tracking")
class PerFrame(keras.layers.TimeDistributed):
    """`TimeDistributed`, computed as one call on all `batch * time` frames.

    Same result as `keras.layers.TimeDistributed` (each frame on its own),
    but the wrapped layer runs once on the frames stacked along the batch
    axis instead of being mapped over time: on JAX it compiles several
    times faster, and on TensorFlow it trains faster.
    """

    def call(self, inputs, training=None, mask=None):
        shape = ops.shape(inputs)
        frames = ops.reshape(inputs, (-1, *inputs.shape[2:]))
        outputs = self.layer(frames, training=training)
        return ops.reshape(outputs, (shape[0], shape[1], *outputs.shape[1:]))


def per_frame_conv(filters, kernel_size, strides=1, transpose=False, **kw):
    """A `Conv2D` (or `Conv2DTranspose`, "same" padding) for every frame."""
    layer = keras.layers.Conv2DTranspose if transpose else keras.layers.Conv2D
    name = kw.pop("name", None)
    conv = layer(filters, kernel_size, strides=strides, padding="same", **kw)
    return PerFrame(conv, name=name)


def build_model(
    recurrent, filters=8, steps=None, decay_steps=1000, run_eagerly=False
):
    """The per-frame CNN (`recurrent=False`) or the ConvGRU (`True`).

    Both have the same backbone: a strided per-frame convolution to half
    resolution, two temporal layers, a skip connection from the strided
    features, a per-frame convolution, and a transposed convolution back
    to full resolution with a per-pixel sigmoid. Only the two temporal
    layers differ: `ConvGRU2D` (a state carried from frame to frame) in
    the ConvGRU, per-frame convolutions (no memory) in the per-frame CNN.
    Full-resolution feature maps are avoided on purpose: on the CPU they
    cost more time than everything else together. The learning rate
    decays (cosine) over `decay_steps` training steps.
    """
    inputs = keras.Input((steps, FRAME_SIZE, FRAME_SIZE, 1), name="frames")
    features = per_frame_conv(filters, 3, strides=2, activation="relu")(inputs)
    x = features
    for _ in range(2):
        if recurrent:
            temporal = kc.ConvGRU2D(
                filters, 3, padding="same", return_sequences=True
            )
        else:
            temporal = per_frame_conv(filters, 3, activation="tanh")
        x = temporal(x)
    # With the frame's own features beside the memory, "what changed"
    # is one convolution away.
    x = keras.layers.Concatenate()([x, features])
    x = per_frame_conv(filters, 3, activation="relu")(x)
    outputs = per_frame_conv(
        1,
        4,
        strides=2,
        transpose=True,
        activation="sigmoid",
        # Start from "probably background" (sigmoid(-4) = 0.018).
        bias_initializer=keras.initializers.Constant(-4.0),
    )(x)
    name = "convgru2d" if recurrent else "per_frame_cnn"
    model = keras.Model(inputs, outputs, name=name)
    model.compile(
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(
                5e-3, decay_steps=decay_steps, alpha=0.1
            )
        ),
        loss=detection_loss,
        run_eagerly=run_eagerly,
    )
    return model


# --- evaluation --------------------------------------------------------------


def iou_per_step(masks, probabilities, threshold=0.5):
    """Intersection over union of the thresholded output, per time step,
    pooled over all sequences (1.0 where both are empty)."""
    predicted = probabilities > threshold
    truth = masks > 0.5
    axes = (0, 2, 3, 4)
    intersection = np.sum(predicted & truth, axis=axes)
    union = np.sum(predicted | truth, axis=axes)
    return np.where(union > 0, intersection / np.maximum(union, 1), 1.0)


def markdown_table(scores):
    """Rows t0..t{T-1}, one column per model."""
    names = list(scores)
    lines = [
        "| step | " + " | ".join(names) + " |",
        "| --- | " + " | ".join("---:" for _ in names) + " |",
    ]
    for t in range(len(scores[names[0]])):
        cells = " | ".join(f"{scores[n][t]:.3f}" for n in names)
        lines.append(f"| t{t} | {cells} |")
    return "\n".join(lines)


def save_figure(path, frames, masks, probabilities):
    """The figure of one sequence: top left, the network's output t0..;
    top right, the ground truth t0..; bottom, the input frames t0..

    The output and the truth are drawn as blocks of two rows.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = frames.shape[0]
    columns = math.ceil(steps / 2)
    fig = plt.figure(figsize=(2 * columns + 0.4, 3.9))
    outer = fig.add_gridspec(2, 1, height_ratios=[2.1, 1], hspace=0.08)
    top = outer[0].subgridspec(
        2,
        2 * columns + 1,
        width_ratios=[1] * columns + [0.2] + [1] * columns,
        hspace=0.25,
        wspace=0.05,
    )
    bottom = outer[1].subgridspec(1, steps, wspace=0.05)

    def panel(spec, image, title, **style):
        ax = fig.add_subplot(spec)
        ax.imshow(image[..., 0], **style)
        ax.set_title(title, fontsize=8, pad=2)
        ax.set_xticks([])
        ax.set_yticks([])

    for t in range(steps):
        row, col = divmod(t, columns)
        heat = dict(cmap="magma", vmin=0.0, vmax=1.0)
        panel(top[row, col], probabilities[t], f"output t{t}", **heat)
        panel(top[row, columns + 1 + col], masks[t], f"truth t{t}", **heat)
        panel(bottom[0, t], frames[t], f"input t{t}", cmap="gray")
    fig.suptitle(
        "ConvGRU2D: output (left), ground truth (right), input frames (bottom)",
        fontsize=10,
    )
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


# --- main ------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=8, help="frames per sequence"
    )
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out",
        default=os.path.join("examples", "output"),
        help="folder for the table, the figure and the .keras model",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny data and models, 1 epoch: checks that the script runs",
    )
    parser.add_argument(
        "--figure-copy",
        default=None,
        help="also write the figure to this path",
    )
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    if args.quick:
        num_train, num_test, epochs, filters = 8, 4, 1, 4
    else:
        num_train, num_test, epochs, filters = 768, 256, 4, 8
    if args.epochs is not None:
        if args.epochs < 1:
            parser.error(f"--epochs must be at least 1, got {args.epochs}")
        epochs = args.epochs
    os.makedirs(args.out, exist_ok=True)
    run_start = time.perf_counter()
    # --quick only shows that the script runs. On TensorFlow one eager
    # step of its tiny models costs less than tracing the training step.
    quick_and_eager = args.quick and keras.backend.backend() == "tensorflow"

    print(f"keras {keras.version()} ({keras.backend.backend()} backend)")
    print(f"keras_convgru {kc.__version__}")
    x_train, y_train = make_flyby(num_train, args.steps, seed=args.seed)
    x_test, y_test = make_flyby(num_test, args.steps, seed=args.seed + 1)
    print(
        f"data: {num_train} training and {num_test} held-out sequences of "
        f"{args.steps} frames {FRAME_SIZE}x{FRAME_SIZE}"
    )

    scores, params, seconds, outputs = {}, {}, {}, {}
    for label, recurrent in (("per-frame CNN", False), ("ConvGRU2D", True)):
        keras.utils.set_random_seed(args.seed)
        model = build_model(
            recurrent,
            filters=filters,
            decay_steps=epochs * math.ceil(num_train / BATCH_SIZE),
            run_eagerly=quick_and_eager,
        )
        params[label] = model.count_params()
        print(f"\n== {label}: {params[label]:,} parameters ==")
        start = time.perf_counter()
        model.fit(
            x_train, y_train, batch_size=BATCH_SIZE, epochs=epochs, verbose=1
        )
        seconds[label] = round(time.perf_counter() - start, 1)
        outputs[label] = ops.convert_to_numpy(
            model.predict(x_test, batch_size=16, verbose=0)
        )
        scores[label] = iou_per_step(y_test, outputs[label])
    convgru = model

    table = markdown_table(scores)
    print("\nIoU per time step (threshold 0.5, held-out sequences):\n")
    print(table)
    total = time.perf_counter() - run_start
    print(f"\ntraining: {seconds}; whole run {total:.0f} s")

    figure = os.path.join(args.out, "flyby_tracking.png")
    for path in filter(None, [figure, args.figure_copy]):
        save_figure(path, x_test[0], y_test[0], outputs["ConvGRU2D"][0])
    print(f"figure: {figure}")

    results = {
        "backend": keras.backend.backend(),
        "args": vars(args),
        "metric": "IoU at threshold 0.5, pooled over held-out sequences",
        "iou": {k: [float(v) for v in s] for k, s in scores.items()},
        "parameters": params,
        "train_seconds": seconds,
        "run_seconds": round(total, 1),
    }
    with open(os.path.join(args.out, "flyby_tracking.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(args.out, "flyby_tracking.md"), "w") as f:
        f.write(table + "\n")

    # The saved model must predict the same once loaded back.
    path = os.path.join(args.out, "flyby_convgru2d.keras")
    convgru.save(path)
    loaded = keras.saving.load_model(path)
    reloaded = ops.convert_to_numpy(
        loaded.predict(x_test, batch_size=16, verbose=0)
    )
    try:
        np.testing.assert_allclose(
            reloaded, outputs["ConvGRU2D"], rtol=1e-5, atol=1e-6
        )
    except AssertionError as error:
        print(f"{path} predicts differently once loaded:\n{error}")
        return 1
    print(f"model: {path} (reloaded, same predictions)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
