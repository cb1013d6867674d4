"""Side-by-side speed and memory of convolutional recurrent layers.

Runs every peer in its own process on the same inputs and prints one
markdown table (and writes it under benchmarks/results/):

- `keras.ConvLSTM2D`: the built-in `keras.layers.ConvLSTM2D`;
- `kc.ConvLSTM2D`, `kc.ConvGRU2D` (reset_after True and False);
- `kc.TrajGRU2D`: the TrajGRU at the same filters, with its default
  `links=5`, `flow_filters=32`, `flow_kernel_size=5` (Shi et al. 2017);
- `kc cell in keras RNN`: `kc.ConvGRU2DCell` stepped by a plain
  `keras.layers.RNN` (what hoisting the input projection buys);
- `floor LSTM`/`floor GRU`/`floor GRU ra=False`: the same convolutions
  batched over all steps with no recurrence (the input-to-state and the
  state-to-state convolutions of every step as two big convolutions, plus
  the gate math): the time a step cannot go below;
- `conv floor LSTM`/`conv floor GRU`: the floor without the gate math;
- `loop floor LSTM`/`loop floor GRU`: the convolutions *with* the
  recurrence but no gates: the input-to-state convolution over all frames,
  then a plain `keras.layers.RNN` whose minimal cell runs only the fused
  state-to-state convolution, an add, the gate split and one `tanh`: what
  the recurrence itself costs (per-step convolutions and Keras's loop),
  which no layer stepped by Keras's loop can go below.

For each: forward and training-step time (median of `--runs` timed runs
after warm-up), with and without `jit_compile=True`, peak resident memory
of the process, achieved GFLOP/s of the training step from the exact
convolution FLOP count (backward = 2x forward), the ratios to the floor and
to the loop floor of the same layer type, and the speed-up over the
built-in. Every peer is measured `--rounds` times, round-robin, each time in
a fresh process; the table gives the median round and the range, because a
shared machine drifts by tens of percent within minutes.

Usage:
    python benchmarks/bench_convrnn.py              # everything
    python benchmarks/bench_convrnn.py --smoke      # one tiny iteration,
                                                    # in one process
    python benchmarks/bench_convrnn.py --workloads small --jit off
    python benchmarks/bench_convrnn.py --workloads large --rounds 2
"""

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time

WORKLOADS = {
    # name: (batch, time, frame, channels, filters); kernel 3x3, "same".
    "small": (4, 10, 16, 8, 16),
    "medium": (8, 10, 32, 16, 32),
    "large": (8, 10, 64, 16, 64),
    "long-T10": (4, 10, 32, 8, 32),
    "long-T20": (4, 20, 32, 8, 32),
    "long-T40": (4, 40, 32, 8, 32),
    "long-T80": (4, 80, 32, 8, 32),
    "frames-128": (2, 10, 128, 16, 32),
    "smoke": (1, 2, 8, 2, 2),
}
KERNEL = 3

PEERS = {
    # name: (layer type for the floor, gate count, recurrent convs/step)
    "keras.ConvLSTM2D": ("lstm", 4),
    "kc.ConvLSTM2D": ("lstm", 4),
    "kc.ConvGRU2D": ("gru", 3),
    "kc.ConvGRU2D ra=False": ("gru ra=False", 3),
    "kc.TrajGRU2D": ("traj", 3),
    "kc cell in keras RNN": ("gru", 3),
    "floor LSTM": ("lstm", 4),
    "floor GRU": ("gru", 3),
    "floor GRU ra=False": ("gru ra=False", 3),
    "conv floor LSTM": ("lstm", 4),
    "conv floor GRU": ("gru", 3),
    "loop floor LSTM": ("lstm", 4),
    "loop floor GRU": ("gru", 3),
}
FLOORS = {
    "lstm": "floor LSTM",
    "gru": "floor GRU",
    "gru ra=False": "floor GRU ra=False",
}
LOOP_FLOORS = {"lstm": "loop floor LSTM", "gru": "loop floor GRU"}


def conv_flops(batch, steps, frame, channels, filters, gates):
    """Exact multiply-add FLOPs of one forward pass (2 per MAC).

    Per step: the input-to-state convolution (channels -> gates*filters)
    and the state-to-state convolution (filters -> gates*filters), 3x3,
    "same" padding, stride 1, so every output pixel sees 9 taps.
    """
    pixels = batch * steps * frame * frame
    taps = KERNEL * KERNEL
    input_conv = 2 * pixels * taps * channels * gates * filters
    state_conv = 2 * pixels * taps * filters * gates * filters
    return input_conv + state_conv


def traj_flops(
    batch, steps, frame, channels, filters, links=5, flow_filters=32, k=5
):
    """Multiply-add FLOPs of one forward pass of a TrajGRU (2 per MAC).

    Per step and pixel: the input-to-state convolution (3x3, channels ->
    3 * filters), the flow generator (k x k: channels and filters ->
    flow_filters, flow_filters -> 2 * links), the bilinear warps (4
    neighbours per link and channel) and the 1x1 mixing (links * filters
    -> 3 * filters).
    """
    pixels = batch * steps * frame * frame
    macs = (
        KERNEL * KERNEL * channels * 3 * filters
        + k * k * (channels + filters) * flow_filters
        + k * k * flow_filters * 2 * links
        + 4 * links * filters
        + links * filters * 3 * filters
    )
    return 2 * pixels * macs


# --------------------------------------------------------------------------
# Worker: one peer, one workload, one jit setting, in its own process.
# --------------------------------------------------------------------------


def _floor_layer(keras, ops, gates, filters, reset_after=True, gates_math=True):
    """The convolutions of a recurrent layer without the recurrence.

    With `gates_math=False` only the two convolutions and the bias (the
    "conv floor"); otherwise also the gate activations and products.
    """

    class Floor(keras.layers.Layer):
        def build(self, input_shape):
            channels = input_shape[-1]
            k = (KERNEL, KERNEL)
            self.kernel = self.add_weight(
                shape=k + (channels, gates * filters), name="kernel"
            )
            self.recurrent_kernel = self.add_weight(
                shape=k + (filters, gates * filters), name="recurrent_kernel"
            )
            self.bias = self.add_weight(
                shape=(gates * filters,), initializer="zeros", name="bias"
            )

        def call(self, x):
            shape = ops.shape(x)
            frames = ops.reshape(x, (-1, *shape[2:]))
            # Stand-in for the states h_0..h_{T-1}: as many frames as the
            # input, with `filters` channels.
            states = frames[..., :1] * ops.ones((filters,), x.dtype)
            xp = ops.conv(frames, self.kernel, padding="same") + self.bias
            if not gates_math:
                # Only the convolutions; the slice gives the output the
                # layer's `filters` channels.
                hp = ops.conv(states, self.recurrent_kernel, padding="same")
                h = (xp + hp)[..., :filters]
            elif gates == 3 and not reset_after:
                split = 2 * filters
                hp = ops.conv(
                    states, self.recurrent_kernel[..., :split], padding="same"
                )
                z, r = ops.split(ops.sigmoid(xp[..., :split] + hp), 2, -1)
                hh = ops.conv(
                    r * states,
                    self.recurrent_kernel[..., split:],
                    padding="same",
                )
                h = z * states + (1 - z) * ops.tanh(xp[..., split:] + hh)
            else:
                hp = ops.conv(states, self.recurrent_kernel, padding="same")
                g = ops.split(xp + hp, gates, -1)
                if gates == 4:
                    i, f, c, o = (
                        ops.sigmoid(g[0]),
                        ops.sigmoid(g[1]),
                        ops.tanh(g[2]),
                        ops.sigmoid(g[3]),
                    )
                    h = o * ops.tanh(f * states + i * c)
                else:
                    z, r = ops.sigmoid(g[0]), ops.sigmoid(g[1])
                    h = z * states + (1 - z) * ops.tanh(g[2] * r)
            return ops.reshape(h, (shape[0], shape[1], *ops.shape(h)[1:]))

    return Floor()


def _loop_floor_model(keras, ops, gates, filters, frame):
    """The convolutions of a recurrent layer with the recurrence, no gates.

    The input-to-state convolution runs once over all frames (as hoisted),
    then a plain `keras.layers.RNN` steps a minimal cell: the fused
    state-to-state convolution, one add, the split of the gates off the
    channel axis and one `tanh` of the first gate
    (`h' = tanh((x_t + U * h)[first gate])`). A layer stepped by Keras's
    loop does all of this and more per step, so this row is what the
    recurrence itself costs: the per-step convolutions, which cannot be
    batched, and the loop.
    """

    class MinimalCell(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.state_size = (frame, frame, filters)
            self.output_size = (frame, frame, filters)

        def build(self, input_shape):
            self.recurrent_kernel = self.add_weight(
                shape=(KERNEL, KERNEL, filters, gates * filters),
                name="recurrent_kernel",
            )

        def get_initial_state(self, batch_size=None):
            return [ops.zeros((batch_size, frame, frame, filters))]

        def call(self, x_t, states):
            hp = ops.conv(states[0], self.recurrent_kernel, padding="same")
            # The layers split the fused gates off the channel axis and use
            # every piece; this uses the first one only.
            h = ops.tanh(ops.split(x_t + hp, gates, axis=-1)[0])
            return h, [h]

    class LoopFloor(keras.Model):
        def __init__(self):
            super().__init__()
            self.rnn = keras.layers.RNN(MinimalCell(), return_sequences=True)

        def build(self, input_shape):
            self.kernel = self.add_weight(
                shape=(KERNEL, KERNEL, input_shape[-1], gates * filters),
                name="kernel",
            )
            self.bias = self.add_weight(
                shape=(gates * filters,), initializer="zeros", name="bias"
            )

        def call(self, x):
            shape = ops.shape(x)
            frames = ops.reshape(x, (-1, *shape[2:]))
            xp = ops.conv(frames, self.kernel, padding="same") + self.bias
            xp = ops.reshape(xp, (shape[0], shape[1], *ops.shape(xp)[1:]))
            return self.rnn(xp)

    return LoopFloor()


def _build_model(peer, workload, jit):
    import keras
    from keras import ops

    import keras_convgru as kc

    batch, steps, frame, channels, filters = WORKLOADS[workload]
    inputs = keras.Input((steps, frame, frame, channels), batch_size=batch)
    common = dict(padding="same", return_sequences=True)
    if peer == "keras.ConvLSTM2D":
        outputs = keras.layers.ConvLSTM2D(filters, KERNEL, **common)(inputs)
    elif peer == "kc.ConvLSTM2D":
        outputs = kc.ConvLSTM2D(filters, KERNEL, **common)(inputs)
    elif peer == "kc.ConvGRU2D":
        outputs = kc.ConvGRU2D(filters, KERNEL, **common)(inputs)
    elif peer == "kc.ConvGRU2D ra=False":
        outputs = kc.ConvGRU2D(filters, KERNEL, reset_after=False, **common)(
            inputs
        )
    elif peer == "kc.TrajGRU2D":
        outputs = kc.TrajGRU2D(filters, KERNEL, return_sequences=True)(inputs)
    elif peer == "kc cell in keras RNN":
        # A plain keras.layers.RNN can't infer N-D output shapes in a
        # functional model, so it runs in a subclassed one.
        class SteppedCell(keras.Model):
            def __init__(self):
                super().__init__()
                self.rnn = keras.layers.RNN(
                    kc.ConvGRU2DCell(filters, KERNEL, padding="same"),
                    return_sequences=True,
                )

            def call(self, x):
                return self.rnn(x)

        model = SteppedCell()
        model.compile(optimizer="sgd", loss="mse", jit_compile=jit)
        return model
    elif peer.startswith("loop floor"):
        model = _loop_floor_model(keras, ops, PEERS[peer][1], filters, frame)
        model.compile(optimizer="sgd", loss="mse", jit_compile=jit)
        return model
    else:
        layer_type = PEERS[peer][0]
        gates = PEERS[peer][1]
        outputs = _floor_layer(
            keras,
            ops,
            gates,
            filters,
            reset_after=layer_type != "gru ra=False",
            gates_math=not peer.startswith("conv floor"),
        )(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse", jit_compile=jit)
    return model


def _median_ms(fn, warmup, runs, min_seconds):
    """Median time of at least `runs` calls, and of at least `min_seconds`
    of calls (up to 200), after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    while len(times) < runs or (sum(times) < min_seconds and len(times) < 200):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return 1000 * times[len(times) // 2], len(times)


def run_worker(peer, workload, jit, warmup, runs, min_seconds=0.0):
    import numpy as np

    batch, steps, frame, channels, filters = WORKLOADS[workload]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, steps, frame, frame, channels))
    x = x.astype("float32")
    y = np.zeros((batch, steps, frame, frame, filters), "float32")
    model = _build_model(peer, workload, jit)

    def forward():
        np.asarray(model.predict_on_batch(x))

    def train():
        model.train_on_batch(x, y)

    fwd_ms, fwd_runs = _median_ms(forward, warmup, runs, min_seconds)
    train_ms, train_runs = _median_ms(train, warmup, runs, min_seconds)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "fwd_ms": fwd_ms,
        "train_ms": train_ms,
        "fwd_runs": fwd_runs,
        "train_runs": train_runs,
        "rss_mb": peak_kb / 1024,
    }


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------


def _median_round(results):
    """One row from a peer's rounds: the median round's times (by training
    step; the lower middle one for an even count), every round's training
    time, and the largest peak memory."""
    ordered = sorted(results, key=lambda r: r["train_ms"])
    row = dict(ordered[(len(ordered) - 1) // 2])
    row["train_rounds_ms"] = [r["train_ms"] for r in results]
    row["rss_mb"] = max(r["rss_mb"] for r in results)
    return row


def _spawn(peer, workload, jit, warmup, runs, min_seconds):
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        "--peer",
        peer,
        "--workloads",
        workload,
        "--jit",
        "on" if jit else "off",
        "--warmup",
        str(warmup),
        "--runs",
        str(runs),
        "--min-seconds",
        str(min_seconds),
    ]
    return run_worker_process(cmd, f"{peer} {workload} jit={jit}")


def run_worker_process(cmd, what, **env):
    """Run a benchmark worker in a fresh process and return the dict it
    prints on its `RESULT ` line (shared by the benchmark scripts)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **env)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
    raise RuntimeError(f"worker failed: {what}")


def write_results(out, report, payload):
    """Write the markdown report to `out` and `payload` next to it as JSON."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        f.write(report)
    with open(os.path.splitext(out)[0] + ".json", "w") as f:
        json.dump(payload, f, indent=1)
    print(f"written to {out}", file=sys.stderr)


def _environment():
    import keras

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {"python": platform.python_version(), "keras": keras.__version__}
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        versions["tensorflow"] = tf.__version__
    elif backend == "jax":
        import jax

        versions["jax"] = jax.__version__
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "backend": backend,
        "versions": versions,
        "date": datetime.date.today().isoformat(),
    }


def _table(rows, workloads):
    header = (
        "| workload | peer | jit | fwd ms | train ms | train range | "
        "GFLOP/s | ratio to floor | ratio to loop floor | peak RSS MB | "
        "speed-up vs built-in |\n"
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: |\n"
    )
    lines = []
    for workload in workloads:
        batch, steps, frame, channels, filters = WORKLOADS[workload]
        label = (
            f"{workload} (B{batch} T{steps} {frame}x{frame} "
            f"C{channels} F{filters})"
        )
        for jit in (False, True):
            results = {
                r["peer"]: r
                for r in rows
                if r["workload"] == workload and r["jit"] == jit
            }
            builtin = results.get("keras.ConvLSTM2D")
            for peer, r in results.items():
                layer_type, gates = PEERS[peer]
                if layer_type == "traj":
                    flops = 3 * traj_flops(
                        batch, steps, frame, channels, filters
                    )
                else:
                    flops = 3 * conv_flops(
                        batch, steps, frame, channels, filters, gates
                    )
                gflops = flops / (r["train_ms"] / 1000) / 1e9
                floor = results.get(FLOORS.get(layer_type))
                ratio = (
                    f"{r['train_ms'] / floor['train_ms']:.2f}" if floor else "-"
                )
                loop_floor = results.get(LOOP_FLOORS.get(layer_type))
                loop_ratio = (
                    f"{r['train_ms'] / loop_floor['train_ms']:.2f}"
                    if loop_floor
                    else "-"
                )
                rounds = r.get("train_rounds_ms", [r["train_ms"]])
                spread = f"{min(rounds):.1f}-{max(rounds):.1f}"
                speedup = (
                    f"{builtin['train_ms'] / r['train_ms']:.2f}x"
                    if builtin
                    else "-"
                )
                lines.append(
                    f"| {label} | {peer} | {'on' if jit else 'off'} | "
                    f"{r['fwd_ms']:.1f} | {r['train_ms']:.1f} | {spread} | "
                    f"{gflops:.1f} | {ratio} | {loop_ratio} | "
                    f"{r['rss_mb']:.0f} | {speedup} |"
                )
    return header + "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", default=None, help="comma-separated")
    parser.add_argument("--peers", default=None, help="comma-separated")
    parser.add_argument("--jit", choices=["off", "on", "both"], default="both")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=2.0,
        help="time each measurement for at least this long (max 200 runs)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="measure every peer this many times, round-robin, each time "
        "in a fresh process; the table gives the median round",
    )
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", default=None, help="results file (.md)")
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--peer", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        result = run_worker(
            args.peer,
            args.workloads,
            args.jit == "on",
            args.warmup,
            args.runs,
            args.min_seconds,
        )
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    if args.smoke:
        workloads, warmup, runs = ["smoke"], 1, 1
    else:
        workloads = (
            args.workloads.split(",")
            if args.workloads
            else [w for w in WORKLOADS if w != "smoke"]
        )
        warmup, runs = args.warmup, args.runs
    for w in workloads:
        if w not in WORKLOADS:
            parser.error(f"unknown workload {w!r}; one of {list(WORKLOADS)}")
    peers = args.peers.split(",") if args.peers else list(PEERS)
    jits = {"off": [False], "on": [True], "both": [False, True]}[args.jit]

    rounds = 1 if args.smoke else args.rounds
    if rounds < 1:
        parser.error(f"--rounds must be at least 1, got {rounds}")
    rows = []
    for workload in workloads:
        for jit in jits:
            # Round-robin: every peer once per round, so slow drifts of a
            # shared machine hit all peers alike; the median round is kept.
            measured = {peer: [] for peer in peers}
            for round_index in range(rounds):
                for peer in peers:
                    if args.smoke:
                        # One process for all peers: the smoke run only
                        # checks that every peer builds, trains, reports.
                        result = run_worker(peer, workload, jit, warmup, runs)
                    else:
                        result = _spawn(
                            peer, workload, jit, warmup, runs, args.min_seconds
                        )
                    measured[peer].append(result)
                    print(
                        f"  {workload:>10} jit={'on' if jit else 'off':3} "
                        f"round {round_index + 1}/{rounds} {peer:<24} "
                        f"fwd {result['fwd_ms']:8.1f} ms  "
                        f"train {result['train_ms']:8.1f} ms",
                        file=sys.stderr,
                        flush=True,
                    )
            for peer in peers:
                row = _median_round(measured[peer])
                row.update(peer=peer, workload=workload, jit=jit)
                rows.append(row)

    env = _environment()
    table = _table(rows, workloads)
    report = (
        f"# keras-convgru benchmark, {env['date']}\n\n"
        f"- CPU: {env['cpu']}, {env['cores']} cores\n"
        f"- backend: {env['backend']}; versions: "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items())
        + f"\n- {rounds} round(s), every peer once per round in its own "
        "process; per round the median of at least "
        f"{runs} timed runs (and at least {args.min_seconds} s of runs, at "
        f"most 200) after {warmup} warm-up; the table gives the median "
        "round, train range the fastest and slowest round; "
        "train = forward + backward + SGD update (`train_on_batch`), "
        "float32, 3x3 kernels, padding same\n\n" + table
    )
    print(report)
    if not args.smoke or args.out:
        out = args.out or os.path.join(
            os.path.dirname(os.path.abspath(__file__)),
            "results",
            f"{env['date']}-cpu-{env['backend']}-jit-{args.jit}.md",
        )
        write_results(out, report, {"environment": env, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
