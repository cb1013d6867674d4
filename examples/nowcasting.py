"""Precipitation nowcasting: TrajGRU2D against ConvGRU2D (Shi et al. 2017).

Synthetic radar-like rain fields: a few soft rain cells that grow and
decay, carried by a smooth velocity field that varies over the frame (a
rotation about a random centre plus a drift), at 2 to 6 pixels per frame,
so the motion outruns what a 3x3 state-to-state kernel can follow in one
step. A model sees 5 frames (64x64) and forecasts the next 10.

Two encoder-forecasters of the same shape, `kc.models.EncoderForecaster`
as in Shi et al. (NeurIPS 2017, the HKO-7 benchmark), are trained the same
way with `fit`: per frame, a strided convolution downsamples 64x64 to
32x32 and a second one to 16x16, with a recurrent encoder layer at each
scale; the forecaster runs the same two scales in reverse, starting from
the encoder's states, fed with zeros at the top and with the upsampled
outputs below (resize, then convolve), back to 64x64. The loss is Shi et
al.'s balanced MSE (`kc.losses.BalancedMSE`): errors on heavier rain weigh
more. One model's recurrent cells are `keras_convgru.TrajGRU2DCell`, the
other's `keras_convgru.ConvGRU2DCell`, with filters chosen so that both
have about the same number of parameters.

The script prints, per lead time, the test MSE and the critical success
index (CSI = hits / (hits + misses + false alarms), `kc.metrics`) at three
rain thresholds (and writes the Heidke skill score too), for both models
and for persistence (the last observed frame held still), the training
time of each model, and draws the inputs, the truth and both forecasts of
one test sequence. It writes a markdown table, a JSON copy and the figure
to `--out`.

Run with `make nowcast`, or:

    KERAS_BACKEND=tensorflow python examples/nowcasting.py
    python examples/nowcasting.py --quick --out /tmp/nowcast
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
INPUT_STEPS = 5
OUTPUT_STEPS = 10
SPEED = (2.0, 6.0)  # pixels per frame, over the frame
THRESHOLDS = (0.1, 0.3, 0.5)  # rain intensity, fields in [0, 1]
BATCH_SIZE = 8

# The weather: rain cells are born anywhere in a domain larger than the
# frame (so new cells drift in), live a few frames and die.
DOMAIN = (-48.0, FRAME_SIZE + 48.0)
CELLS = 18
RADIUS = (3.0, 8.0)  # Gaussian radius of a cell, pixels
ROTATION = (0.02, 0.05)  # angular speed of the rotation, radians/frame
DRIFT = (2.5, 4.0)  # pixels per frame
SUBSTEPS = 4  # integration steps per frame for the advection


# --- data --------------------------------------------------------------------


def velocity_field(points, centre, omega, drift):
    """Velocity `(..., 2)` (rows, cols per frame) at `points` `(..., 2)`:
    a rigid rotation with angular speed `omega` about `centre` plus a
    uniform `drift`; `centre`, `omega`, `drift` broadcast against points.
    """
    offset = points - centre
    # d(row)/dt = omega * col offset, d(col)/dt = -omega * row offset.
    rotation = omega[..., None] * np.stack(
        [offset[..., 1], -offset[..., 0]], axis=-1
    )
    return rotation + drift


def draw_weather(rng, num_sequences):
    """Per sequence, the velocity field's parameters, with every speed over
    the frame in `SPEED`."""
    centre = np.empty((num_sequences, 2))
    omega = np.empty(num_sequences)
    drift = np.empty((num_sequences, 2))
    corners = np.array(
        [[r, c] for r in (0, FRAME_SIZE - 1) for c in (0, FRAME_SIZE - 1)]
    )
    grid = np.stack(
        np.meshgrid(*[np.linspace(0, FRAME_SIZE - 1, 9)] * 2, indexing="ij"),
        axis=-1,
    ).reshape(-1, 2)
    points = np.concatenate([corners, grid])
    for i in range(num_sequences):
        while True:  # rejection sampling: 2-6 pixels per frame everywhere
            c = rng.uniform(0.25, 0.75, 2) * FRAME_SIZE
            w = rng.uniform(*ROTATION) * rng.choice([-1.0, 1.0])
            angle = rng.uniform(0, 2 * np.pi)
            d = rng.uniform(*DRIFT) * np.array([np.sin(angle), np.cos(angle)])
            speed = np.linalg.norm(
                velocity_field(points, c, np.array(w), d), axis=-1
            )
            if SPEED[0] <= speed.min() and speed.max() <= SPEED[1]:
                break
        centre[i], omega[i], drift[i] = c, w, d
    return centre, omega, drift


def make_rain(num_sequences, seed=0):
    """Rain fields `(num_sequences, INPUT_STEPS + OUTPUT_STEPS, 64, 64, 1)`
    in [0, 1], and the velocity parameters `(centre, omega, drift)`.

    Each sequence has `CELLS` Gaussian rain cells whose centres move with
    the sequence's velocity field (integrated with `SUBSTEPS` midpoint
    steps per frame). A cell's peak intensity follows a life cycle
    `peak * exp(-(t - t_peak)**2 / (2 * life**2))`: it grows, then decays.
    Overlapping cells add up, clipped at 1.
    """
    rng = np.random.default_rng(seed)
    steps = INPUT_STEPS + OUTPUT_STEPS
    centre, omega, drift = draw_weather(rng, num_sequences)
    shape = (num_sequences, CELLS)
    positions = rng.uniform(*DOMAIN, size=shape + (2,))
    radius = rng.uniform(*RADIUS, size=shape)
    peak = rng.uniform(0.4, 1.0, size=shape)
    t_peak = rng.uniform(-4, steps + 4, size=shape)
    life = rng.uniform(4, 10, size=shape)
    # A cell is slightly elongated along a random direction.
    stretch = rng.uniform(1.0, 1.6, size=shape)
    angle = rng.uniform(0, np.pi, size=shape)
    axis = np.stack([np.sin(angle), np.cos(angle)], axis=-1)

    rows, cols = np.meshgrid(
        np.arange(FRAME_SIZE), np.arange(FRAME_SIZE), indexing="ij"
    )
    pixels = np.stack([rows, cols], axis=-1).astype("float64")
    frames = np.zeros((num_sequences, steps, FRAME_SIZE, FRAME_SIZE))
    c, w, d = centre[:, None], omega[:, None], drift[:, None]
    for t in range(steps):
        # (sequences, 1, 1, cells, 2) against pixels (64, 64, 1, 2)
        offset = pixels[None, :, :, None] - positions[:, None, None]
        along = (offset * axis[:, None, None]).sum(-1)
        across_sq = (offset**2).sum(-1) - along**2
        r2 = (along / stretch[:, None, None]) ** 2 + across_sq
        intensity = peak * np.exp(-((t - t_peak) ** 2) / (2 * life**2))
        blobs = intensity[:, None, None] * np.exp(
            -r2 / (2 * radius[:, None, None] ** 2)
        )
        frames[:, t] = np.minimum(blobs.sum(-1), 1.0)
        dt = 1.0 / SUBSTEPS
        for _ in range(SUBSTEPS):
            half = positions + 0.5 * dt * velocity_field(positions, c, w, d)
            positions = positions + dt * velocity_field(half, c, w, d)
    return frames[..., None].astype("float32"), (centre, omega, drift)


# --- models ------------------------------------------------------------------


# The recurrent cells' filters (32x32 scale, 16x16 scale) and TrajGRU
# links per model: the ConvGRU gets more filters so that the two models
# have about the same number of parameters.
MODELS = {
    "TrajGRU2D": {"filters": (16, 32), "links": 5},
    "ConvGRU2D": {"filters": (19, 38), "links": None},
}
QUICK_MODELS = {
    "TrajGRU2D": {"filters": (4, 4), "links": 2},
    "ConvGRU2D": {"filters": (4, 4), "links": None},
}


# Weights of the balanced loss: heavier rain counts more (as Shi et al.'s
# B-MSE, whose weights are 1, 2, 5, 10, 30 by rain rate).
LOSS_THRESHOLDS = (0.1, 0.3, 0.5)
LOSS_WEIGHTS = (2.0, 5.0, 10.0)


def build_model(kind, filters, links, decay_steps=1000, run_eagerly=False):
    """The encoder-forecaster (`kc.models.EncoderForecaster`) with `kind`
    recurrent cells at the 32x32 and 16x16 scales; see the module's
    docstring. Adam with a cosine-decaying learning rate and the balanced
    MSE (`kc.losses.BalancedMSE`)."""
    if kind == "TrajGRU2D":
        cell, arguments = (
            "TrajGRU2DCell",
            {
                "links": links,
                "flow_filters": 16,
                "flow_kernel_size": 5,
            },
        )
    else:
        cell, arguments = "ConvGRU2DCell", {}
    model = kc.models.EncoderForecaster(
        cell,
        filters=list(filters),
        strides=2,
        output_steps=OUTPUT_STEPS,
        output_activation="sigmoid",
        # Most pixels are dry: start near sigmoid(-3) = 0.05.
        output_bias_initializer=keras.initializers.Constant(-3.0),
        cell_arguments=arguments,
        name=f"nowcast_{kind}",
    )
    model.build((None, INPUT_STEPS, FRAME_SIZE, FRAME_SIZE, 1))
    model.compile(
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(
                2e-3, decay_steps=decay_steps, alpha=0.05
            ),
            clipnorm=1.0,
        ),
        loss=kc.losses.BalancedMSE(LOSS_THRESHOLDS, LOSS_WEIGHTS),
        run_eagerly=run_eagerly,
    )
    return model


# --- scores ----------------------------------------------------------------


def per_lead_time(metric, predicted, truth):
    """`metric` (a `kc.metrics` score) at each lead time (axis 1), pooled
    over the test sequences."""
    values = []
    for t in range(truth.shape[1]):
        metric.reset_state()
        metric.update_state(truth[:, t], predicted[:, t])
        values.append(float(ops.convert_to_numpy(metric.result())))
    return values


def scores(predicted, truth):
    """MSE, and CSI and HSS at every threshold, per lead time (lists)."""
    result = {
        "mse": [float(v) for v in ((predicted - truth) ** 2).mean((0, 2, 3, 4))]
    }
    for threshold in THRESHOLDS:
        result[f"csi@{threshold}"] = per_lead_time(
            kc.metrics.CriticalSuccessIndex(threshold), predicted, truth
        )
        result[f"hss@{threshold}"] = per_lead_time(
            kc.metrics.HeidkeSkillScore(threshold), predicted, truth
        )
    return result


class EpochTimer(keras.callbacks.Callback):
    """Wall-clock seconds of every training epoch."""

    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def markdown_tables(results, references):
    """A summary (one row per model, then persistence) and one table per
    score with a row per lead time."""
    rows = {**results, **references}
    keys = ["mse"] + [f"csi@{t}" for t in THRESHOLDS]
    lines = [
        "| model | parameters | training s | s / epoch | MSE | "
        + " | ".join(f"CSI ≥ {t}" for t in THRESHOLDS)
        + " |",
        "| --- | ---: | ---: | ---: | ---: | "
        + " | ".join("---:" for _ in THRESHOLDS)
        + " |",
    ]
    for name, r in rows.items():
        trained = name in results
        means = [np.nanmean(r[k]) for k in keys]
        lines.append(
            f"| {name}{'' if trained else ' (reference)'} | "
            + (
                f"{r['parameters']:,} | {r['training_seconds']:.0f} | "
                f"{r['seconds_per_epoch']:.0f} | "
                if trained
                else "- | - | - | "
            )
            + f"{means[0]:.4f} | "
            + " | ".join(f"{m:.3f}" for m in means[1:])
            + " |"
        )
    names = list(rows)
    lines += [
        "",
        "| lead | "
        + " | ".join(f"MSE {n}" for n in names)
        + " | "
        + " | ".join(f"CSI ≥ {t} {n}" for t in THRESHOLDS for n in names)
        + " |",
        "| --- | "
        + " | ".join("---:" for _ in range(len(names) * len(keys)))
        + " |",
    ]
    for t in range(OUTPUT_STEPS):
        cells = [f"{rows[n]['mse'][t]:.4f}" for n in names]
        cells += [
            f"{rows[n][f'csi@{th}'][t]:.3f}" for th in THRESHOLDS for n in names
        ]
        lines.append(f"| t+{t + 1} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save_figure(path, observed, truth, forecasts):
    """Row 0: the 5 observed frames; then the truth and each forecast over
    the 10 lead times."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {"observed": observed, "truth": truth, **forecasts}
    fig, axes = plt.subplots(
        len(rows),
        OUTPUT_STEPS,
        figsize=(1.25 * OUTPUT_STEPS, 1.4 * len(rows)),
        squeeze=False,
    )
    for r, (label, frames) in enumerate(rows.items()):
        for t in range(OUTPUT_STEPS):
            ax = axes[r, t]
            ax.set_xticks([])
            ax.set_yticks([])
            if t >= len(frames):
                ax.axis("off")
                continue
            ax.imshow(frames[t, ..., 0], cmap="turbo", vmin=0, vmax=1)
            if label == "observed":
                ax.set_title(f"t{t - INPUT_STEPS + 1}", fontsize=8)
            elif r == 1:
                ax.set_title(f"t+{t + 1}", fontsize=8)
        axes[r, 0].set_ylabel(label, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --- main --------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--train", type=int, default=None, help="sequences")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--models",
        default=None,
        help="comma-separated subset of TrajGRU2D,ConvGRU2D (default both)",
    )
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
        num_train, num_test, epochs, models = 2, 2, 1, QUICK_MODELS
    else:
        num_train, num_test, epochs, models = 640, 128, 6, MODELS
    if args.epochs is not None:
        if args.epochs < 1:
            parser.error(f"--epochs must be at least 1, got {args.epochs}")
        epochs = args.epochs
    if args.train is not None:
        num_train = args.train
    if args.models is not None:
        names = args.models.split(",")
        unknown = sorted(set(names) - set(models))
        if unknown:
            parser.error(f"unknown --models {unknown}; one of {list(models)}")
        models = {name: models[name] for name in names}
    os.makedirs(args.out, exist_ok=True)
    run_start = time.perf_counter()
    # --quick only shows that the script runs. On TensorFlow one eager
    # step of its tiny models costs less than tracing the training step.
    quick_and_eager = args.quick and keras.backend.backend() == "tensorflow"

    print(f"keras {keras.version()} ({keras.backend.backend()} backend)")
    print(f"keras_convgru {kc.__version__}")
    train, _ = make_rain(num_train, args.seed)
    test, _ = make_rain(num_test, args.seed + 1)
    x_train, y_train = train[:, :INPUT_STEPS], train[:, INPUT_STEPS:]
    x_test, y_test = test[:, :INPUT_STEPS], test[:, INPUT_STEPS:]
    wet = {t: float((test >= t).mean()) for t in THRESHOLDS}
    print(
        f"data: {num_train} training and {num_test} test sequences, "
        f"{INPUT_STEPS} frames in, {OUTPUT_STEPS} out, "
        f"{FRAME_SIZE}x{FRAME_SIZE}; fraction of test pixels at or above "
        + ", ".join(f"{t}: {f:.3f}" for t, f in wet.items())
    )

    # The figure shows the test sequence with the most rain.
    shown = int(np.argmax(test.sum(axis=(1, 2, 3, 4))))
    results, forecasts = {}, {}
    for name, spec in models.items():
        keras.utils.set_random_seed(args.seed)
        model = build_model(
            name,
            spec["filters"],
            spec["links"],
            decay_steps=epochs * math.ceil(num_train / BATCH_SIZE),
            run_eagerly=quick_and_eager,
        )
        print(f"\n== {name}: {model.count_params():,} parameters ==")
        timer = EpochTimer()
        start = time.perf_counter()
        model.fit(
            x_train,
            y_train,
            batch_size=BATCH_SIZE,
            epochs=epochs,
            callbacks=[timer],
            verbose=2,
        )
        training_seconds = time.perf_counter() - start
        predicted = ops.convert_to_numpy(model.predict(x_test, verbose=0))
        results[name] = {
            "parameters": model.count_params(),
            "training_seconds": training_seconds,
            # The first epoch also traces and compiles the training step.
            "seconds_per_epoch": float(np.median(timer.seconds)),
            "epoch_seconds": [float(s) for s in timer.seconds],
            **scores(predicted, y_test),
        }
        forecasts[name] = predicted[shown]
    held = np.repeat(x_test[:, -1:], OUTPUT_STEPS, axis=1)
    references = {"persistence": scores(held, y_test)}

    tables = markdown_tables(results, references)
    print("\nTest set, 10 lead times (MSE, CSI at each threshold):\n")
    print(tables)
    total = time.perf_counter() - run_start
    print(f"\nwhole run {total:.0f} s")
    with open(os.path.join(args.out, "nowcasting.json"), "w") as f:
        json.dump(
            {
                "backend": keras.backend.backend(),
                "args": vars(args),
                "thresholds": list(THRESHOLDS),
                "wet_fraction": wet,
                "figure_sequence": shown,
                "results": results,
                "references": references,
                "run_seconds": round(total, 1),
            },
            f,
            indent=2,
        )
    with open(os.path.join(args.out, "nowcasting.md"), "w") as f:
        f.write(tables + "\n")
    figure = os.path.join(args.out, "nowcasting.png")
    for path in filter(None, [figure, args.figure_copy]):
        save_figure(path, x_test[shown], y_test[shown], forecasts)
    print(f"\nfigure: {figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
