"""PredRNN and PredRNN++ training steps next to plain PyTorch, and what
SA-ConvLSTM's attention costs (issue #20, item 5).

Table 1, workload `predrnn` (the authors' Moving MNIST setting): batch 8,
20 frames of 64 x 64 x 1 (10 input, 10 output), each frame turned into
16 x 16 x 16 by a 4 x 4 space-to-depth (PredRNN's `patch_size=4`,
`reshape_patch`, done once in NumPy outside the timing), 4 layers of 64
filters, 5 x 5 kernels. One training step is teacher forcing over the
sequence as the authors train: the model reads the patched frames
`[:, :19]` and predicts frames `[:, 1:]` through a 1 x 1 convolution of
the top hidden state (no bias), MSE loss, SGD (lr 0.01). Peers (rows):

- `kc PredRNN`: `keras.Model` of `kc.ConvRNN([kc.SpatioTemporalLSTM2DCell
  (64, 5)] * 4, return_sequences=True)` and `keras.layers.Conv3D(16,
  (1, 1, 1), use_bias=False)`, `train_on_batch`;
- `kc PredRNN++`: the same with the cells `[CausalLSTM2DCell,
  GradientHighwayUnit2DCell, CausalLSTM2DCell, CausalLSTM2DCell]`;
- `torch PredRNN`, `torch PredRNN++`: the same models in plain PyTorch as
  their authors write them (benchmarks/peers_predrnn.py: `nn.Conv2d`
  cells, channels first, `torch.split`, `conv_last`), loss, backward and
  `torch.optim.SGD`. Before timing, the worker builds our Keras model,
  maps its weights onto the PyTorch model (the PyTorch peer is then timed
  with them) and fails unless both give the same outputs (max abs
  difference < 1e-4) on one sample of 3 frames.

Setups (columns), each the environment of its worker processes, set
before Keras is imported: `tf-onednn-on` (KERAS_BACKEND=tensorflow,
TF_ENABLE_ONEDNN_OPTS=1), `tf-onednn-off` (the same with =0), `torch`
(KERAS_BACKEND=torch); every TensorFlow worker checks with TensorFlow's
own runtime flag that its oneDNN path is the one asked for, and fails
otherwise (bench_convrnn.check_setup). The PyTorch peers run in their own
process (KERAS_BACKEND=torch) and are shown in every column (marked †
outside the `torch` column) to compare with.

Table 2, SA-ConvLSTM's cost: the training step (forward + backward + SGD
update, `train_on_batch`, MSE against zeros of the output sequence) of
`kc.SAConvLSTM2D(64, 5)` against `kc.ConvLSTM2D(64, 5, padding="same")`
(both `return_sequences=True`) at 16 x 16 and 32 x 32 frames, batch 8, 10
steps, 16 input channels, on `tf-onednn-on` (`--sa-setups` adds
`torch`).

The numbers: every peer runs `--rounds` times, round-robin over all the
(setup, peer) jobs, each time in a fresh process; per round the median of
at least `--runs` timed training steps after `--warmup` untimed ones. A
cell gives the median round's training step in ms and, in brackets, the
fastest and slowest round. `RSS MB`: the worker's peak resident memory
(framework, model, data and the training step; the PyTorch workers also
hold Keras and the model of the weight check). `step MB`: how much the
peak grew while training (peak after the timed steps minus peak before
the first one): the memory of the training step itself (activations kept
for backpropagation, gradients, traced graphs). `vs PyTorch`: the
plain-PyTorch model of the same stack's training step over the row's
(above 1: faster than plain PyTorch). Table 2 adds `ms / step`, the
training step over the 10 time steps, and `SA / ConvLSTM`, the ratios
of SA-ConvLSTM's training time and step memory to ConvLSTM's in the same
setup and frame size.

Reproduce (on 2 idle cores about 25-30 minutes: a training step of table 1
takes about 7 s with oneDNN, more in the other setups, and each of its 24
worker processes, 8 jobs x 3 rounds, runs 4 of them, 1 untimed; table 2's
12 workers take a few minutes; the report's header gives the time taken):
    python benchmarks/bench_predrnn.py
    python benchmarks/bench_predrnn.py --smoke            # every peer once
    python benchmarks/bench_predrnn.py --tables sa --sa-setups \\
        tf-onednn-on,torch --rounds 1
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_convrnn as common  # noqa: E402
import peers_predrnn as native  # noqa: E402

WORKLOADS = {
    # name: (batch, frames, frame side, patch, filters, kernel); frames of
    # one channel, patched to (side / patch)^2 pixels of patch^2 channels.
    "predrnn": (8, 20, 64, 4, 64, 5),
    "smoke": (1, 4, 32, 4, 8, 5),
}
SA_WORKLOADS = {
    # name: (batch, steps, frame side, channels, filters, kernel).
    "sa-16": (8, 10, 16, 16, 64, 5),
    "sa-32": (8, 10, 32, 16, 64, 5),
    "sa-smoke": (1, 2, 8, 4, 8, 3),
}
SA_DEFAULT = ("sa-16", "sa-32")
SETUPS = {
    s: common.SETUPS[s]
    for s in ("tf-onednn-on", "tf-onednn-off", "torch", "jax")
}
DEFAULT_SETUPS = ("tf-onednn-on", "tf-onednn-off", "torch")
DEFAULT_SA_SETUPS = ("tf-onednn-on",)
PEERS = {"kc PredRNN": "predrnn", "kc PredRNN++": "predrnn++"}
# Native peers: stack, and the setup whose environment their worker runs.
NATIVE_PEERS = {
    "torch PredRNN": ("predrnn", "torch"),
    "torch PredRNN++": ("predrnn++", "torch"),
}
SA_PEERS = ("kc.ConvLSTM2D", "kc.SAConvLSTM2D")
TABLES = ("main", "sa")
# The weight check's input: one sample of this many frames.
CHECK_FRAMES = 3


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


def reshape_patch(frames, patch):
    """PredRNN's space-to-depth: `(batch, time, H, W, C)` ->
    `(batch, time, H / patch, W / patch, patch * patch * C)`, each
    patch's pixels in row-major order, channels innermost."""
    b, t, h, w, c = frames.shape
    a = frames.reshape(b, t, h // patch, patch, w // patch, patch, c)
    a = a.transpose(0, 1, 2, 4, 3, 5, 6)
    return a.reshape(b, t, h // patch, w // patch, patch * patch * c)


def patched_batch(workload):
    """The seeded batch, patched: `(inputs, targets)` = frames `[:, :-1]`
    and `[:, 1:]` (teacher forcing), channels last, float32."""
    import numpy as np

    batch, frames, side, patch, _, _ = WORKLOADS[workload]
    rng = np.random.default_rng(0)
    video = rng.uniform(0.0, 1.0, (batch, frames, side, side, 1))
    video = reshape_patch(video.astype("float32"), patch)
    return video[:, :-1].copy(), video[:, 1:].copy()


def _sa_batch(workload):
    import numpy as np

    batch, steps, side, channels, filters, _ = SA_WORKLOADS[workload]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, steps, side, side, channels))
    y = np.zeros((batch, steps, side, side, filters), "float32")
    return x.astype("float32"), y


# --------------------------------------------------------------------------
# Worker: peers of one setup on one workload, in this process.
# --------------------------------------------------------------------------


def _measure_train(train, warmup, runs, min_seconds):
    """Median training step and the memory: peak RSS before the first
    step, at the end, and the growth (`step_mb`)."""
    before = common._peak_rss_mb()
    train_ms, train_runs = common._median_ms(train, warmup, runs, min_seconds)
    after = common._peak_rss_mb()
    return {
        "train_ms": train_ms,
        "train_runs": train_runs,
        "rss_mb": after,
        "step_mb": after - before,
    }


def _compiled(model, setup):
    model.compile(
        optimizer="sgd",
        loss="mse",
        jit_compile=SETUPS[setup]["jit_compile"],
    )
    return model


def _sa_model(peer, workload):
    import keras

    import keras_convgru as kc

    batch, steps, side, channels, filters, kernel = SA_WORKLOADS[workload]
    inputs = keras.Input((steps, side, side, channels), batch_size=batch)
    if peer == "kc.SAConvLSTM2D":
        layer = kc.SAConvLSTM2D(filters, kernel, return_sequences=True)
    else:
        layer = kc.ConvLSTM2D(
            filters, kernel, padding="same", return_sequences=True
        )
    return keras.Model(inputs, layer(inputs))


def run_keras_peer(setup, peer, workload, warmup, runs, min_seconds=0.0):
    """Time `train_on_batch` of a Keras peer (table 1 or 2) in this
    process, which must run `setup` (`bench_convrnn.check_setup`)."""
    found = common.check_setup(setup)
    if peer in PEERS:
        x, y = patched_batch(workload)
        batch, _, _, _, filters, kernel = WORKLOADS[workload]
        model = native.kc_model(
            PEERS[peer], x.shape[1:], filters, kernel, batch_size=batch
        )
    else:
        x, y = _sa_batch(workload)
        model = _sa_model(peer, workload)
    model = _compiled(model, setup)

    def train():
        model.train_on_batch(x, y)

    return {
        **_measure_train(train, warmup, runs, min_seconds),
        "jit_compile": bool(model.jit_compile),
        **found,
    }


def run_native_peer(peer, workload, warmup, runs, min_seconds=0.0):
    """Check the PyTorch peer against our Keras model (on whatever Keras
    backend this process runs; raises if they differ), then time its
    training step with the checked weights."""
    import torch

    x, y = patched_batch(workload)
    _, _, _, _, filters, kernel = WORKLOADS[workload]
    stack = NATIVE_PEERS[peer][0]
    state, diff = native.check_torch_matches_kc(
        stack, x[:1, :CHECK_FRAMES], filters, kernel
    )
    train = native.build_torch(stack, x, y, filters, kernel, state)
    return {
        **_measure_train(train, warmup, runs, min_seconds),
        "max_abs_diff_vs_kc": diff,
        "torch_threads": torch.get_num_threads(),
    }


def run_worker(setup, peers, workload, warmup, runs, min_seconds=0.0):
    """Run `peers` one after the other in this process: Keras peers in
    `setup`, native peers as they are. One dict per peer."""
    results = []
    for peer in peers:
        if peer in NATIVE_PEERS:
            result = run_native_peer(peer, workload, warmup, runs, min_seconds)
        else:
            result = run_keras_peer(
                setup, peer, workload, warmup, runs, min_seconds
            )
        results.append(dict(result, peer=peer))
    return results


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------


def _spawn(setup, peers, workload, warmup, runs, min_seconds):
    """Run `peers` in one fresh process with `setup`'s environment."""
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        "--setups",
        setup,
        "--peers",
        ",".join(peers),
        "--workload",
        workload,
        "--warmup",
        str(warmup),
        "--runs",
        str(runs),
        "--min-seconds",
        str(min_seconds),
    ]
    return common.run_worker_process(
        cmd,
        f"{setup}: {', '.join(peers)} on {workload}",
        **SETUPS[setup]["env"],
    )


def plan(tables, setups, peers, sa_setups, smoke):
    """The jobs: a list of `(workload, setup, [peers])`, every Keras peer
    in each of its setups and every native peer in its home setup."""
    jobs = []
    if "main" in tables:
        workload = "smoke" if smoke else "predrnn"
        keras_peers = [p for p in peers if p in PEERS]
        jobs += [(workload, s, [p]) for s in setups for p in keras_peers]
        jobs += [
            (workload, NATIVE_PEERS[p][1], [p])
            for p in peers
            if p in NATIVE_PEERS
        ]
    if "sa" in tables:
        workloads = ["sa-smoke"] if smoke else list(SA_DEFAULT)
        jobs += [
            (w, s, [p]) for w in workloads for s in sa_setups for p in SA_PEERS
        ]
    return jobs


def _grouped(jobs):
    """Smoke: the jobs of one (workload, setup) in one process."""
    groups = {}
    for workload, setup, peers in jobs:
        groups.setdefault((workload, setup), []).extend(peers)
    return [(w, s, p) for (w, s), p in groups.items()]


def _progress(workload, setup, round_index, rounds, result):
    print(
        f"  {workload:>8} {setup:<14} round {round_index + 1}/{rounds} "
        f"{result['peer']:<18} train {result['train_ms']:9.1f} ms  "
        f"RSS {result['rss_mb']:7.0f} MB",
        file=sys.stderr,
        flush=True,
    )


def run_jobs(jobs, rounds, warmup, runs, min_seconds, in_process=False):
    """Every job `rounds` times, round-robin, each in a fresh process (or,
    `in_process`, all in this one); `{(workload, setup, peer): row}` with
    the median round (bench_convrnn._median_round)."""
    measured = {}
    for round_index in range(rounds):
        for workload, setup, peers in jobs:
            if in_process:
                results = run_worker(
                    setup, peers, workload, warmup, runs, min_seconds
                )
            else:
                results = _spawn(
                    setup, peers, workload, warmup, runs, min_seconds
                )
            for result in results:
                _progress(workload, setup, round_index, rounds, result)
                key = (workload, setup, result["peer"])
                measured.setdefault(key, []).append(result)
    rows = {}
    for key, results in measured.items():
        row = common._median_round(results)
        row["step_mb"] = max(r["step_mb"] for r in results)
        rows[key] = row
    return rows


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def _train_cell(row):
    rounds = row.get("train_rounds_ms", [row["train_ms"]])
    text = f"{row['train_ms']:.1f}"
    if len(rounds) > 1:
        text += f" [{min(rounds):.1f}-{max(rounds):.1f}]"
    return text


def _lookup(rows, workload, setup, peer):
    """The row shown for `peer` in `setup`'s column, and whether it was
    measured in another setup's environment."""
    if peer in NATIVE_PEERS:
        home = NATIVE_PEERS[peer][1]
        row = rows.get((workload, home, peer))
        return row, row is not None and setup != home
    return rows.get((workload, setup, peer)), False


def _stack(peer):
    return PEERS[peer] if peer in PEERS else NATIVE_PEERS[peer][0]


def main_table(rows, workload, setups, peers):
    """Table 1: a row per peer; per setup train ms [range], vs PyTorch, RSS
    MB, step MB."""
    head = ["peer"]
    for s in setups:
        head += [f"{s} train ms", f"{s} vs PyTorch", f"{s} RSS MB"]
        head += [f"{s} step MB"]
    lines = [
        "| " + " | ".join(head) + " |",
        "| --- |" + " ---: |" * (len(head) - 1),
    ]
    by_stack = {NATIVE_PEERS[p][0]: p for p in NATIVE_PEERS if p in peers}
    for peer in peers:
        cells = []
        for setup in setups:
            row, elsewhere = _lookup(rows, workload, setup, peer)
            if row is None:
                cells += ["-"] * 4
                continue
            mark = "†" if elsewhere else ""
            torch_peer = by_stack.get(_stack(peer))
            torch_row = (
                _lookup(rows, workload, setup, torch_peer)[0]
                if torch_peer
                else None
            )
            vs = (
                f"{torch_row['train_ms'] / row['train_ms']:.2f}x"
                if torch_row
                else "-"
            )
            cells += [
                _train_cell(row) + mark,
                vs,
                f"{row['rss_mb']:.0f}{mark}",
                f"{row['step_mb']:.0f}{mark}",
            ]
        if any(c != "-" for c in cells):
            lines.append(f"| {peer} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def sa_table(rows, workloads, setups):
    """Table 2: per frame size and setup, ConvLSTM and SA-ConvLSTM."""
    lines = [
        "| frames | setup | layer | train ms | ms / step | RSS MB | "
        "step MB | SA / ConvLSTM time | SA / ConvLSTM step MB |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for workload in workloads:
        _, steps, side, _, _, _ = SA_WORKLOADS[workload]
        for setup in setups:
            base = rows.get((workload, setup, "kc.ConvLSTM2D"))
            for peer in SA_PEERS:
                row = rows.get((workload, setup, peer))
                if row is None:
                    continue
                ratio_t = ratio_m = "-"
                if peer == "kc.SAConvLSTM2D" and base is not None:
                    ratio_t = f"{row['train_ms'] / base['train_ms']:.2f}x"
                    if base["step_mb"] > 0:
                        ratio_m = f"{row['step_mb'] / base['step_mb']:.2f}x"
                lines.append(
                    f"| {side}x{side} | {setup} | {peer} | "
                    f"{_train_cell(row)} | {row['train_ms'] / steps:.1f} | "
                    f"{row['rss_mb']:.0f} | {row['step_mb']:.0f} | "
                    f"{ratio_t} | {ratio_m} |"
                )
    return "\n".join(lines) + "\n"


def _setup_line(setup, rows):
    env = " ".join(f"{k}={v}" for k, v in SETUPS[setup]["env"].items())
    found = [r for (_, s, p), r in rows.items() if s == setup and "onednn" in r]
    parts = [f"`{setup}`: {env}"]
    onednn = {r["onednn"] for r in found}
    if onednn == {True}:
        parts.append("oneDNN active in every worker")
    elif onednn == {False}:
        parts.append("oneDNN off in every worker")
    elif onednn:
        parts.append("oneDNN on in some workers, off in others")
    jit = {
        r["jit_compile"]
        for (_, s, _), r in rows.items()
        if s == setup and "jit_compile" in r
    }
    requested = SETUPS[setup]["jit_compile"]
    parts.append(
        f"compile(jit_compile={requested!r})"
        + (f" -> {', '.join(str(j) for j in sorted(jit))}" if jit else "")
    )
    return "- " + ", ".join(parts)


def _main_label(workload):
    batch, frames, side, patch, filters, kernel = WORKLOADS[workload]
    p = side // patch
    return (
        f"B{batch}, {frames} frames {side}x{side}x1 patched {patch}x{patch} "
        f"to {p}x{p}x{patch * patch} ({frames - 1} steps), 4 layers of "
        f"{filters} filters, kernel {kernel}"
    )


def report(rows, tables, setups, peers, sa_setups, meta):
    machine = meta["machine"]
    # The setups that Keras ran in (the native peers' home is noted apart).
    used = {s for (_, s, _), r in rows.items() if "backend" in r}
    lines = [
        f"# keras-convgru PredRNN benchmark, {machine['date']}",
        "",
        f"- CPU: {machine['cpu']}, {machine['cores']} cores",
        "- versions: "
        + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()),
        "- setups, each worker's environment set before Keras is imported:",
    ]
    lines += ["  " + _setup_line(s, rows) for s in SETUPS if s in used]
    if meta["mode"] == "measure":
        lines.append(
            f"- {meta['rounds']} round(s), every peer once per round in its "
            "own process, round-robin over all jobs; per round the median "
            f"of at least {meta['runs']} timed training steps (and at "
            f"least {meta['min_seconds']} s of them, at most 200) after "
            f"{meta['warmup']} warm-up; a cell gives the median round and, "
            "in brackets, the fastest and slowest round; "
            f"{meta['wall_s'] / 60:.1f} minutes in all"
        )
    else:
        lines.append(
            "- smoke run: every peer once, 1 timed step after 1 warm-up, "
            f"{meta['mode']}: the numbers mean nothing"
        )
    lines += [
        "- train = forward + backward + SGD update (lr 0.01), float32: "
        "`train_on_batch` for Keras, loss + `backward()` + "
        "`optimizer.step()` for plain PyTorch; RSS MB: the worker's peak "
        "resident memory; step MB: its growth over the training steps "
        "(peak after them minus peak before the first)",
        "",
    ]
    if "main" in tables:
        workload = meta["main_workload"]
        lines += [
            f"## PredRNN and PredRNN++: {_main_label(workload)}",
            "",
            "Teacher forcing: the model reads patched frames `[:, :-1]` and "
            "predicts `[:, 1:]` through a 1 x 1 convolution (no bias) of "
            "the top hidden state, MSE. PredRNN: 4 ST-LSTM cells; "
            "PredRNN++: causal LSTM, GHU, causal LSTM, causal LSTM. vs "
            "PyTorch: the plain-PyTorch model of the same stack's training "
            "step over the row's.",
            "",
        ]
        if any(p in NATIVE_PEERS for p in peers):
            diffs = [
                r["max_abs_diff_vs_kc"]
                for (_, _, p), r in rows.items()
                if p in NATIVE_PEERS
            ]
            lines.append(
                "† plain PyTorch (benchmarks/peers_predrnn.py), measured in "
                "its own process (KERAS_BACKEND=torch, PyTorch's default "
                "threads) and shown in every column; timed with the weights "
                "of our model, whose outputs it matched (max abs "
                f"difference {max(diffs):.1e}, < 1e-4 required); its "
                "worker's memory includes Keras and that check's model.\n"
            )
        lines.append(main_table(rows, workload, setups, peers))
    if "sa" in tables:
        sa_workloads = meta["sa_workloads"]
        batch, steps, _, channels, filters, kernel = SA_WORKLOADS[
            sa_workloads[0]
        ]
        lines += [
            "## SA-ConvLSTM's cost",
            "",
            f"`kc.SAConvLSTM2D({filters}, {kernel})` against "
            f'`kc.ConvLSTM2D({filters}, {kernel}, padding="same")`, '
            f"return_sequences=True, B{batch}, {steps} steps, {channels} "
            "input channels; train = forward + backward + SGD "
            "(`train_on_batch`, MSE against zeros); ms / step: train over "
            "the time steps.",
            "",
            sa_table(rows, sa_workloads, sa_setups),
        ]
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def _parse_list(value, known, what, parser):
    items = [v.strip() for v in value.split(",") if v.strip()]
    for item in items:
        if item not in known:
            parser.error(f"unknown {what} {item!r}; one of {list(known)}")
    return items


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--tables",
        default=",".join(TABLES),
        help="comma-separated, of main (PredRNN/PredRNN++) and sa "
        "(SA-ConvLSTM's cost)",
    )
    parser.add_argument(
        "--setups",
        default=",".join(DEFAULT_SETUPS),
        help=f"table 1's Keras setups, comma-separated, of {list(SETUPS)}",
    )
    parser.add_argument(
        "--peers",
        default=None,
        help="table 1's peers, comma-separated; default all: "
        f"{', '.join(list(PEERS) + list(NATIVE_PEERS))}",
    )
    parser.add_argument(
        "--sa-setups",
        default=",".join(DEFAULT_SA_SETUPS),
        help=f"table 2's setups, comma-separated, of {list(SETUPS)}",
    )
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=0.0,
        help="time each measurement for at least this long (max 200 runs)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="run every job this many times, round-robin, each time in a "
        "fresh process; a cell gives the median round",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="every peer once on tiny workloads (one process per setup); "
        "nothing written without --out",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="with --smoke: everything in this process, which must run "
        "the one selected setup (both tables use it; the tests' way)",
    )
    parser.add_argument("--out", default=None, help="results file (.md)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workload", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    known_peers = list(PEERS) + list(NATIVE_PEERS)
    if args.worker:
        results = run_worker(
            args.setups,
            args.peers.split(","),
            args.workload,
            args.warmup,
            args.runs,
            args.min_seconds,
        )
        print("RESULT " + json.dumps(results), flush=True)
        return 0

    tables = _parse_list(args.tables, TABLES, "table", parser)
    setups = _parse_list(args.setups, SETUPS, "setup", parser)
    sa_setups = _parse_list(args.sa_setups, SETUPS, "setup", parser)
    peers = (
        known_peers
        if args.peers in (None, "", "all")
        else _parse_list(args.peers, known_peers, "peer", parser)
    )
    if args.in_process:
        if not (args.smoke and len(setups) == 1):
            parser.error("--in-process needs --smoke and exactly one setup")
        sa_setups = setups
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")

    jobs = plan(tables, setups, peers, sa_setups, args.smoke)
    start = time.perf_counter()
    if args.smoke:
        rounds, warmup, runs, min_seconds = 1, 1, 1, 0.0
        rows = run_jobs(
            _grouped(jobs), 1, 1, 1, 0.0, in_process=args.in_process
        )
    else:
        rounds, warmup, runs = args.rounds, args.warmup, args.runs
        min_seconds = args.min_seconds
        rows = run_jobs(jobs, rounds, warmup, runs, min_seconds)
    meta = {
        "mode": (
            "measure"
            if not args.smoke
            else "in one process"
            if args.in_process
            else "one process per setup"
        ),
        "machine": common._machine(),
        "rounds": rounds,
        "warmup": warmup,
        "runs": runs,
        "min_seconds": min_seconds,
        "wall_s": time.perf_counter() - start,
        "main_workload": "smoke" if args.smoke else "predrnn",
        "sa_workloads": ["sa-smoke"] if args.smoke else list(SA_DEFAULT),
    }
    text = report(rows, tables, setups, peers, sa_setups, meta)
    print(text)
    if not args.smoke or args.out:
        out = args.out or os.path.join(
            os.path.dirname(os.path.abspath(__file__)),
            "results",
            f"{meta['machine']['date']}-predrnn-cpu.md",
        )
        payload = dict(
            meta,
            tables=tables,
            setups={s: SETUPS[s] for s in setups},
            sa_setups=sa_setups,
            peers=peers,
            workloads={
                **{meta["main_workload"]: WORKLOADS[meta["main_workload"]]},
                **{w: SA_WORKLOADS[w] for w in meta["sa_workloads"]},
            },
            rows=[
                dict(r, workload=w, setup=s, peer=p)
                for (w, s, p), r in rows.items()
            ],
        )
        common.write_results(out, text, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
