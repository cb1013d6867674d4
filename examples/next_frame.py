"""Next-frame prediction on Moving Digits: ConvGRU2D and ConvLSTM2D variants.

The data follow the Moving-MNIST protocol with scikit-learn's bundled 8x8
handwritten digits (`sklearn.datasets.load_digits`, nothing is downloaded):
two digits, upscaled to 16x16, bounce inside 64x64 frames; a model sees 10
frames and predicts the next 10. Training and test sequences use disjoint
digit images.

Six models of the same encoder-forecaster shape are trained the same way
(same epochs, same seed), each with one kind of recurrent layer:
`keras_convgru.ConvGRU2D` without and with `normalization="layer"`,
`keras_convgru.ConvLSTM2D` without peepholes, with the paper's
`peepholes="full"` (Shi et al. 2015) and with `normalization="layer"`, and
`keras.layers.ConvLSTM2D`. The script prints
a markdown table (parameters, training seconds per epoch, test MSE of every
predicted frame, mean SSIM, and the same for copying the last observed
frame as a reference), writes it with a JSON copy to `--out`, and
draws the truth and every model's prediction for one test sequence.

Causality. The keras.io ConvLSTM next-frame example trains on
`(frames[:-1], frames[1:])` and ends in a `Conv3D` with `padding="same"`
over time, so its prediction at step t sees the input at step t + 1, which
is the frame it is asked to predict (keras-team/keras-io issue 1003). Here
no layer can look ahead:

- the model's only input is the 10 observed frames; the 10 frames to
  predict are never an input, only the training target;
- every layer before the encoder is applied to each frame on its own
  (`PerFrame`, a `TimeDistributed`), and the encoder is a
  recurrent layer, so its state after step t depends on frames 0..t
  only;
- the forecaster is a second recurrent layer that starts from the
  encoder's final state and is fed zeros (`FutureSteps`), not the true
  future frames; the decoder is again per frame.

`tests/test_examples.py` checks this on the model builder: changing
observed frames after step t leaves the encoder's outputs up to step t
unchanged (and the same check catches a `Conv3D` with `"same"` padding over
time), and each sequence's forecast does not depend on the other sequences
in its batch.

Run with `make next-frame`, or:

    KERAS_BACKEND=tensorflow python examples/next_frame.py
    python examples/next_frame.py --quick --out /tmp/next_frame
"""

import argparse
import functools
import json
import math
import os
import time

import keras
import numpy as np
from keras import ops

import keras_convgru as kc

FRAME_SIZE = 64
DIGIT_SIZE = 16
INPUT_STEPS = 10
OUTPUT_STEPS = 10
SPEED = (2.0, 4.0)  # pixels per frame
BATCH_SIZE = 8

# The recurrent layer of each model: a class, or a class with options.
# No name starts with another (the tables' rows are found by their name).
LAYERS = {
    "kc.ConvGRU2D": kc.ConvGRU2D,
    "normalized kc.ConvGRU2D": functools.partial(
        kc.ConvGRU2D, normalization="layer"
    ),
    "kc.ConvLSTM2D": kc.ConvLSTM2D,
    "peephole kc.ConvLSTM2D": functools.partial(
        kc.ConvLSTM2D, peepholes="full"
    ),
    "normalized kc.ConvLSTM2D": functools.partial(
        kc.ConvLSTM2D, normalization="layer"
    ),
    "keras.ConvLSTM2D": keras.layers.ConvLSTM2D,
}


# --- data --------------------------------------------------------------------


def load_digit_images():
    """scikit-learn's 1797 8x8 digits, upscaled to 16x16, in [0, 1]."""
    from sklearn.datasets import load_digits

    images = load_digits().images.astype("float32") / 16.0
    scale = DIGIT_SIZE // images.shape[-1]
    return np.kron(images, np.ones((1, scale, scale), dtype="float32"))


def _bounce(start, velocity, steps, limit):
    """Positions `start + t * velocity` reflected into `[0, limit]`."""
    t = np.arange(steps, dtype="float32")
    raw = start[..., None] + velocity[..., None] * t
    folded = np.mod(raw, 2.0 * limit)
    return limit - np.abs(folded - limit)


def make_moving_digits(num_sequences, images, seed=0, digits=2):
    """Moving-Digits sequences of `INPUT_STEPS + OUTPUT_STEPS` frames.

    Each sequence shows `digits` images drawn from `images`, each moving
    with its own constant velocity and bouncing off the frame's edges;
    overlapping digits are combined with a pixelwise maximum.

    Returns:
        float32 array `(num_sequences, steps, FRAME_SIZE, FRAME_SIZE, 1)`
        in [0, 1].
    """
    rng = np.random.default_rng(seed)
    steps = INPUT_STEPS + OUTPUT_STEPS
    limit = FRAME_SIZE - DIGIT_SIZE
    frames = np.zeros((num_sequences, steps, FRAME_SIZE, FRAME_SIZE), "float32")
    seq = np.arange(num_sequences)[:, None, None, None]
    time_index = np.arange(steps)[None, :, None, None]
    offsets = np.arange(DIGIT_SIZE)
    for _ in range(digits):
        digit = images[rng.integers(0, len(images), num_sequences)]
        start = rng.uniform(0, limit, (num_sequences, 2))
        angle = rng.uniform(0, 2 * np.pi, num_sequences)
        speed = rng.uniform(*SPEED, num_sequences)
        velocity = speed[:, None] * np.stack(
            [np.sin(angle), np.cos(angle)], axis=-1
        )
        corner = np.rint(_bounce(start, velocity, steps, limit)).astype(int)
        rows = corner[:, 0, :, None, None] + offsets[None, None, :, None]
        cols = corner[:, 1, :, None, None] + offsets[None, None, None, :]
        index = (seq, time_index, rows, cols)
        frames[index] = np.maximum(frames[index], digit[:, None])
    return frames[..., None]


# --- models ------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="next_frame")
class FutureSteps(keras.layers.Layer):
    """The forecaster's input: zeros `(batch, steps, *spatial, 1)`.

    It only takes the batch size and the frame size from the encoded
    frames; no value of any frame reaches the forecaster this way.
    """

    def __init__(self, steps, **kwargs):
        super().__init__(**kwargs)
        self.steps = steps

    def call(self, encoded):
        shape = ops.shape(encoded)
        return ops.zeros(
            (shape[0], self.steps, shape[2], shape[3], 1), dtype=self.dtype
        )

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.steps, *input_shape[2:4], 1)

    def get_config(self):
        return {**super().get_config(), "steps": self.steps}


@keras.saving.register_keras_serializable(package="next_frame")
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
    layer_class, filters=16, features=16, decay_steps=1000, run_eagerly=False
):
    """Encoder-forecaster with one recurrent layer class (or partial).

    Per frame, two strided convolutions encode a 64x64 frame to a 16x16
    feature map; the encoder (`layer_class`) reads the 10 encoded frames;
    the forecaster (`layer_class` again) starts from the encoder's final
    state and runs 10 steps on zeros; per frame, two transposed
    convolutions decode its outputs to 64x64 frames with a sigmoid.
    Adam's learning rate decays (cosine) over `decay_steps` steps.
    """
    inputs = keras.Input(
        (INPUT_STEPS, FRAME_SIZE, FRAME_SIZE, 1), name="observed_frames"
    )
    x = per_frame_conv(features // 2, 3, strides=2, activation="relu")(inputs)
    x = per_frame_conv(features, 3, strides=2, activation="relu")(x)
    encoder = layer_class(
        filters,
        3,
        padding="same",
        return_sequences=True,
        return_state=True,
        name="encoder",
    )
    _, *state = encoder(x)
    future = FutureSteps(OUTPUT_STEPS, name="future_steps")(x)
    forecaster = layer_class(
        filters, 3, padding="same", return_sequences=True, name="forecaster"
    )
    y = forecaster(future, initial_state=state)
    y = per_frame_conv(
        features // 2, 4, strides=2, transpose=True, activation="relu"
    )(y)
    outputs = per_frame_conv(
        1,
        4,
        strides=2,
        transpose=True,
        activation="sigmoid",
        # Most pixels are black: start near sigmoid(-3) = 0.05.
        bias_initializer=keras.initializers.Constant(-3.0),
        name="predicted_frames",
    )(y)
    model = keras.Model(inputs, outputs, name="encoder_forecaster")
    model.compile(
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(
                3e-3, decay_steps=decay_steps, alpha=0.1
            )
        ),
        loss="binary_crossentropy",
        run_eagerly=run_eagerly,
    )
    return model


# --- metrics -----------------------------------------------------------------


def _gaussian_window(size=11, sigma=1.5):
    x = np.arange(size, dtype="float64") - (size - 1) / 2.0
    w = np.exp(-(x**2) / (2.0 * sigma**2))
    return w / w.sum()


def _filter_valid(images, window):
    """Separable 'valid' filtering of the last two axes."""
    size = len(window)
    rows = sum(
        window[i] * images[..., i : images.shape[-2] - size + 1 + i, :]
        for i in range(size)
    )
    return sum(
        window[i] * rows[..., i : rows.shape[-1] - size + 1 + i]
        for i in range(size)
    )


def ssim(x, y, data_range=1.0, size=11, sigma=1.5, k1=0.01, k2=0.03):
    """Mean structural similarity of images `x` and `y` (Wang et al. 2004).

    Local statistics use a `size`x`size` Gaussian window of standard
    deviation `sigma` at every position where it fits in the image
    ('valid'); `C1 = (k1 * L)**2`, `C2 = (k2 * L)**2` with `L` the data
    range:

        SSIM = (2 mu_x mu_y + C1) (2 cov_xy + C2)
               / ((mu_x**2 + mu_y**2 + C1) (var_x + var_y + C2))

    averaged over positions. Leading axes are batch axes: the result has
    their shape (a float for a pair of 2D images).
    """
    x = np.asarray(x, dtype="float64")
    y = np.asarray(y, dtype="float64")
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in shape: {x.shape} != {y.shape}")
    window = _gaussian_window(size, sigma)
    mu_x = _filter_valid(x, window)
    mu_y = _filter_valid(y, window)
    var_x = _filter_valid(x * x, window) - mu_x**2
    var_y = _filter_valid(y * y, window) - mu_y**2
    cov = _filter_valid(x * y, window) - mu_x * mu_y
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return index.mean(axis=(-2, -1))


# --- report ------------------------------------------------------------------


class EpochTimer(keras.callbacks.Callback):
    """Wall-clock seconds of every training epoch."""

    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def frame_scores(predicted, truth):
    """Test MSE and mean SSIM of every predicted frame (lists)."""
    return {
        "mse": ((predicted - truth) ** 2).mean(axis=(0, 2, 3, 4)).tolist(),
        "ssim": ssim(predicted[..., 0], truth[..., 0]).mean(axis=0).tolist(),
    }


def markdown_tables(results, references):
    """A summary table (one row per model, then the references, which
    are not trained) and a per-frame table."""
    lines = [
        "| model | parameters | s / epoch | test MSE | test SSIM |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['parameters']:,} | {r['seconds_per_epoch']:.1f} "
            f"| {np.mean(r['mse']):.4f} | {np.mean(r['ssim']):.3f} |"
        )
    for name, r in references.items():
        lines.append(
            f"| {name} (reference) | - | - "
            f"| {np.mean(r['mse']):.4f} | {np.mean(r['ssim']):.3f} |"
        )
    rows = {**results, **references}
    lines += [
        "",
        "| frame | "
        + " | ".join(f"MSE {n}" for n in rows)
        + " | "
        + " | ".join(f"SSIM {n}" for n in rows)
        + " |",
        "| --- | " + " | ".join("---:" for _ in range(2 * len(rows))) + " |",
    ]
    for t in range(OUTPUT_STEPS):
        mse = " | ".join(f"{r['mse'][t]:.4f}" for r in rows.values())
        ssim_cells = " | ".join(f"{r['ssim'][t]:.3f}" for r in rows.values())
        lines.append(f"| t+{t + 1} | {mse} | {ssim_cells} |")
    return "\n".join(lines)


def save_figure(path, truth, predictions):
    """Rows: the true future frames, then each model's prediction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {"truth": truth, **predictions}
    steps = truth.shape[0]
    fig, axes = plt.subplots(
        len(rows), steps, figsize=(1.3 * steps, 1.45 * len(rows)), squeeze=False
    )
    for r, (label, frames) in enumerate(rows.items()):
        for t in range(steps):
            ax = axes[r, t]
            ax.imshow(frames[t, ..., 0], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"t+{t + 1}", fontsize=9)
        axes[r, 0].set_ylabel(label, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- main ------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("examples", "output"))
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny data, models and 1 epoch: checks that the script runs",
    )
    parser.add_argument(
        "--figure-copy",
        default=None,
        help="also write the figure here (e.g. docs/examples/...png)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        num_train, num_test, epochs, filters = 8, 4, 1, 4
    else:
        num_train, num_test, epochs, filters = 1024, 128, 4, 16
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
    images = load_digit_images()
    order = np.random.default_rng(args.seed).permutation(len(images))
    split = int(0.8 * len(images))
    train = make_moving_digits(num_train, images[order[:split]], args.seed)
    test = make_moving_digits(num_test, images[order[split:]], args.seed + 1)
    x_train, y_train = train[:, :INPUT_STEPS], train[:, INPUT_STEPS:]
    x_test, y_test = test[:, :INPUT_STEPS], test[:, INPUT_STEPS:]
    print(
        f"data: {num_train} training and {num_test} test sequences, "
        f"{INPUT_STEPS} frames in, {OUTPUT_STEPS} out, "
        f"{FRAME_SIZE}x{FRAME_SIZE}"
    )

    results, predictions = {}, {}
    for name, layer_class in LAYERS.items():
        keras.utils.set_random_seed(args.seed)
        model = build_model(
            layer_class,
            filters=filters,
            features=filters,
            decay_steps=epochs * math.ceil(num_train / BATCH_SIZE),
            run_eagerly=quick_and_eager,
        )
        print(f"\n== {name}: {model.count_params():,} parameters ==")
        timer = EpochTimer()
        model.fit(
            x_train,
            y_train,
            batch_size=BATCH_SIZE,
            epochs=epochs,
            callbacks=[timer],
            verbose=1,
        )
        predicted = ops.convert_to_numpy(model.predict(x_test, verbose=0))
        results[name] = {
            "parameters": model.count_params(),
            # The first epoch also traces and compiles the training step.
            "seconds_per_epoch": float(np.median(timer.seconds)),
            "epoch_seconds": [float(s) for s in timer.seconds],
            **frame_scores(predicted, y_test),
        }
        predictions[name] = predicted[0]
    # What a model must beat: the last observed frame, held still.
    held = np.repeat(x_test[:, -1:], OUTPUT_STEPS, axis=1)
    references = {"copy last frame": frame_scores(held, y_test)}

    tables = markdown_tables(results, references)
    print("\nTest set, 10 predicted frames (MSE and SSIM per frame):\n")
    print(tables)
    total = time.perf_counter() - run_start
    print(f"\nwhole run {total:.0f} s")
    with open(os.path.join(args.out, "next_frame.json"), "w") as f:
        json.dump(
            {
                "backend": keras.backend.backend(),
                "args": vars(args),
                "results": results,
                "references": references,
                "run_seconds": round(total, 1),
            },
            f,
            indent=2,
        )
    with open(os.path.join(args.out, "next_frame.md"), "w") as f:
        f.write(tables + "\n")
    figure = os.path.join(args.out, "next_frame.png")
    for path in filter(None, [figure, args.figure_copy]):
        save_figure(path, y_test[0], predictions)
    print(f"\nfigure: {figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
