"""Peak memory of a training step as the sequences and the frames grow.

For `kc.ConvGRU2D`, `kc.ConvLSTM2D` and the built-in
`keras.layers.ConvLSTM2D` (TensorFlow backend, CPU, float32, 3x3 kernels,
`padding="same"`, `return_sequences=True`, MSE loss, SGD), one
measurement per process:

1. build and compile the model, make the data;
2. baseline = the process's peak resident memory so far
   (`resource.getrusage(RUSAGE_SELF).ru_maxrss`);
3. run `--train-steps` calls of `model.train_on_batch`;
4. report peak - baseline: the training step's own memory (activations
   kept for backpropagation, their gradients, the traced graph).

Two sweeps: the number of time steps doubles (10, 20, 40, 80) at a fixed
frame size, and the frame side doubles (16, 32, 64, 128) at a fixed number
of steps. For each peer it fits `memory = a + b * steps` (and
`a + b * pixels`) by least squares and prints the slope `b`, with the
slope that the activation-memory formula of docs/scaling.md predicts.

Usage:
    python benchmarks/bench_memory.py            # both sweeps, ~10 min
    python benchmarks/bench_memory.py --sweeps steps --peers kc.ConvGRU2D
    python benchmarks/bench_memory.py --sweeps steps --shape 4,8,32
    python benchmarks/bench_memory.py --smoke    # tiny, in this process
"""

import argparse
import json
import os
import resource
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_convrnn import _environment  # noqa: E402
from bench_convrnn import run_worker_process  # noqa: E402
from bench_convrnn import write_results  # noqa: E402

BATCH = 2
CHANNELS = 4
FILTERS = 16
KERNEL = 3
SWEEPS = {
    # name: list of (steps, frame side)
    "steps": [(10, 32), (20, 32), (40, 32), (80, 32)],
    "frame": [(10, 16), (10, 32), (10, 64), (10, 128)],
}
SMOKE = [(2, 8)]
PEERS = (
    "kc.ConvGRU2D",
    "kc.ConvLSTM2D",
    "kc.ConvGRU2D stepped",
    "kc.ConvLSTM2D stepped",
    "keras.ConvLSTM2D",
)
GATES = {"gru": 3, "lstm": 4}
# ConvRNN hoists the input projection out of the time loop when one
# sample's projection of one step has at most
# `ConvRNN.max_hoisted_step_elements` elements; the "stepped" peers set it
# to 0 to measure the layer without hoisting.


def family(peer):
    return "gru" if "GRU" in peer else "lstm"


def hoisted(peer, steps, side):
    if peer.startswith("keras") or peer.endswith("stepped"):
        return False
    import keras_convgru as kc

    limit = kc.ConvRNN.max_hoisted_step_elements
    return GATES[family(peer)] * FILTERS * side * side <= limit


def saved_floats_per_pixel(peer, is_hoisted, channels=None, f=None):
    """The formula of docs/scaling.md: floats per pixel and time step that
    a training step holds for backpropagation.

    Counted from TensorFlow's gradient graph of the time loop (what the
    loop pushes per iteration) plus the sequence-sized tensors outside it:
    """
    channels = CHANNELS if channels is None else channels
    f = FILTERS if f is None else f
    if peer.startswith("keras"):
        # Keras's ConvLSTM2D: the frame x_t and 7 f-channel tensors.
        loop = channels + 7 * f
        sequence = channels + f  # the input and the output sequences
        return loop + sequence
    # keras_convgru's step: GRU h_(t-1), [z, r] (2f), z, r, the reset
    # recurrent term, h_tilde, h_(t-1) - h_tilde = 8f; LSTM h_(t-1),
    # c_(t-1), i, f, g, o, tanh(c_t) = 7f.
    loop = 8 * f if family(peer) == "gru" else 7 * f
    gates = GATES[family(peer)]
    if is_hoisted:
        # The projection of every step, consumed by the loop.
        sequence = gates * f
    else:
        # The frame x_t, pushed by the loop for the input kernel.
        loop += channels
        sequence = 0
    return loop + sequence + channels + f  # + the input and the output


# --------------------------------------------------------------------------
# Worker: one measurement, in its own process.
# --------------------------------------------------------------------------


def _peak_mb():
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_worker(peer, steps, side, train_steps):
    import keras
    import numpy as np

    import keras_convgru as kc

    if peer.startswith("keras"):
        layer_class = keras.layers.ConvLSTM2D
    else:
        layer_class = kc.ConvGRU2D if family(peer) == "gru" else kc.ConvLSTM2D
    layer = layer_class(FILTERS, KERNEL, padding="same", return_sequences=True)
    if peer.endswith("stepped"):
        layer.max_hoisted_step_elements = 0
    inputs = keras.Input((steps, side, side, CHANNELS), batch_size=BATCH)
    outputs = layer(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.01), "mse", jit_compile=False)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, steps, side, side, CHANNELS))
    x = x.astype("float32")
    y = np.zeros((BATCH, steps, side, side, FILTERS), "float32")
    baseline = _peak_mb()
    for _ in range(train_steps):
        model.train_on_batch(x, y)
    peak = _peak_mb()
    return {
        "baseline_mb": baseline,
        "peak_mb": peak,
        "delta_mb": peak - baseline,
    }


def _spawn(peer, steps, side, train_steps):
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        "--peer",
        peer,
        "--steps",
        str(steps),
        "--side",
        str(side),
        "--train-steps",
        str(train_steps),
        "--shape",
        f"{BATCH},{CHANNELS},{FILTERS}",
    ]
    return run_worker_process(
        cmd, f"{peer} steps={steps} side={side}", KERAS_BACKEND="tensorflow"
    )


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------


def fit_line(xs, ys):
    """Least-squares (intercept, slope) of ys against xs."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        return mean_y, 0.0
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sxx
    return mean_y - slope * mean_x, slope


def predicted_mb(peer, steps, side):
    """Formula: saved floats per pixel-step x pixels x steps x 4 bytes."""
    floats = saved_floats_per_pixel(peer, hoisted(peer, steps, side))
    return floats * BATCH * side * side * steps * 4 / 2**20


def summarize(rows):
    """Per sweep and peer: the fitted line, and the slope in floats per
    pixel and step next to the formula's."""
    fits = []
    for sweep in sorted({r["sweep"] for r in rows}):
        for peer in PEERS:
            points = [
                r for r in rows if r["sweep"] == sweep and r["peer"] == peer
            ]
            if len(points) < 2:
                continue
            if sweep == "frame":
                # x = pixels per batch; one pixel-step is x * steps.
                xs = [BATCH * r["side"] ** 2 for r in points]
                per_unit = points[0]["steps"]
            else:
                # x = steps; one step is BATCH * side^2 pixel-steps.
                xs = [r["steps"] for r in points]
                per_unit = BATCH * points[0]["side"] ** 2
            intercept, slope = fit_line(xs, [r["delta_mb"] for r in points])
            _, formula = fit_line(xs, [r["predicted_mb"] for r in points])
            floats = 2**20 / 4 / per_unit
            fits.append(
                {
                    "sweep": sweep,
                    "peer": peer,
                    "intercept_mb": intercept,
                    "slope_mb": slope,
                    "floats_per_pixel_step": slope * floats,
                    "formula_floats_per_pixel_step": formula * floats,
                    "max_residual_mb": max(
                        abs(r["delta_mb"] - intercept - slope * x)
                        for r, x in zip(points, xs)
                    ),
                }
            )
    return fits


def markdown(rows, fits, env, train_steps):
    lines = [
        f"# keras-convgru training-step memory, {env['date']}",
        "",
        f"- CPU: {env['cpu']}, {env['cores']} cores; backend "
        f"{env['backend']}; "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
        f"- batch {BATCH}, {CHANNELS} input channels, {FILTERS} filters, "
        f"{KERNEL}x{KERNEL} kernels, padding same, return_sequences=True, "
        "float32, SGD, `train_on_batch` without XLA; one process per row",
        f"- memory = peak RSS after {train_steps} training steps minus "
        "peak RSS after building the model and the data",
        "- formula = saved floats per pixel and step (docs/scaling.md) "
        "x pixels x steps x 4 bytes; hoisted = input projection computed "
        "before the time loop",
        "",
        "| sweep | peer | steps | frame | hoisted | memory MB | "
        "formula MB | peak RSS MB |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['sweep']} | {r['peer']} | {r['steps']} | "
            f"{r['side']}x{r['side']} | {'yes' if r['hoisted'] else 'no'} | "
            f"{r['delta_mb']:.1f} | {r['predicted_mb']:.1f} | "
            f"{r['peak_mb']:.0f} |"
        )
    lines += [
        "",
        "Fitted `memory = a + b x` (x = steps for the steps sweep, pixels "
        "per batch for the frame sweep); the slope in floats per pixel "
        "and step next to the formula's:",
        "",
        "| sweep | peer | slope b (MB per x) | floats per pixel-step | "
        "formula | intercept a MB | max residual MB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for f in fits:
        lines.append(
            f"| {f['sweep']} | {f['peer']} | {f['slope_mb']:.4g} | "
            f"{f['floats_per_pixel_step']:.0f} | "
            f"{f['formula_floats_per_pixel_step']:.0f} | "
            f"{f['intercept_mb']:.1f} | {f['max_residual_mb']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    # --shape replaces the module's batch, channels and filters, which the
    # worker, the formula and the report all read.
    global BATCH, CHANNELS, FILTERS
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sweeps", default="steps,frame")
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--train-steps", type=int, default=2)
    parser.add_argument(
        "--shape",
        default=f"{BATCH},{CHANNELS},{FILTERS}",
        help="batch,input channels,filters (default %(default)s)",
    )
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", default=None, help="results file (.md)")
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--side", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        shape = [int(v) for v in args.shape.split(",")]
    except ValueError:
        shape = []
    if len(shape) != 3 or min(shape) < 1:
        parser.error(
            f"--shape takes three positive integers batch,channels,filters; "
            f"got {args.shape!r}"
        )
    BATCH, CHANNELS, FILTERS = shape

    if args.worker:
        result = run_worker(args.peer, args.steps, args.side, args.train_steps)
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    peers = args.peers.split(",")
    for peer in peers:
        if peer not in PEERS:
            parser.error(f"unknown peer {peer!r}; one of {list(PEERS)}")
    if args.smoke:
        sweeps = {"smoke": SMOKE}
        train_steps = 1
    else:
        names = args.sweeps.split(",")
        for name in names:
            if name not in SWEEPS:
                parser.error(f"unknown sweep {name!r}; one of {list(SWEEPS)}")
        sweeps = {name: SWEEPS[name] for name in names}
        train_steps = args.train_steps

    rows = []
    for sweep, points in sweeps.items():
        for peer in peers:
            for steps, side in points:
                if args.smoke:
                    # One process for everything: checks that the code
                    # runs; the numbers mean nothing.
                    result = run_worker(peer, steps, side, train_steps)
                else:
                    result = _spawn(peer, steps, side, train_steps)
                result.update(
                    sweep=sweep,
                    peer=peer,
                    steps=steps,
                    side=side,
                    hoisted=hoisted(peer, steps, side),
                    predicted_mb=predicted_mb(peer, steps, side),
                )
                rows.append(result)
                print(
                    f"  {sweep:>5} {peer:<17} T={steps:<3} {side:>3}x{side:<3}"
                    f" {result['delta_mb']:8.1f} MB",
                    file=sys.stderr,
                    flush=True,
                )
    fits = summarize(rows)
    env = _environment()
    report = markdown(rows, fits, env, train_steps)
    print(report)
    if not args.smoke or args.out:
        out = args.out or os.path.join(
            os.path.dirname(os.path.abspath(__file__)),
            "results",
            f"{env['date']}-memory-cpu-{env['backend']}.md",
        )
        write_results(
            out, report, {"environment": env, "rows": rows, "fits": fits}
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
