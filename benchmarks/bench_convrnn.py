"""Side-by-side speed and memory of convolutional recurrent layers.

One run measures what users run: the training step and the forward pass of
ConvLSTM and ConvGRU layers in every Keras backend on the CPU, next to the
same layers written in plain PyTorch and in Flax, and prints one markdown
table per workload plus a "which layer to pick" summary (and writes them
under benchmarks/results/).

Setups (the columns), each one environment of its worker processes, set
before Keras is imported:

- `tf-onednn-on`: KERAS_BACKEND=tensorflow, TF_ENABLE_ONEDNN_OPTS=1
  (TensorFlow's default on x86 CPUs with AVX-512), no jit_compile;
- `tf-onednn-off`: the same with TF_ENABLE_ONEDNN_OPTS=0 (Eigen kernels);
- `jax`: KERAS_BACKEND=jax, Keras's default jit_compile ("auto": on);
- `torch`: KERAS_BACKEND=torch, Keras's default jit_compile ("auto": off);
- `tf-xla` (not in the default run): TensorFlow, oneDNN on,
  `jit_compile=True`.

Keras peers (the rows), run in every selected setup:

- `keras.ConvLSTM2D`: the built-in `keras.layers.ConvLSTM2D`;
- `kc.ConvLSTM2D`, `kc.ConvGRU2D` (reset_after=True);
- `floor LSTM`/`floor GRU`: the same convolutions batched over all steps
  with no recurrence (the input-to-state and the state-to-state
  convolutions of every step as two big convolutions, plus the gate math):
  the time a step cannot go below;
- `loop floor LSTM`/`loop floor GRU`: the convolutions *with* the
  recurrence but no gates: the input-to-state convolution over all frames,
  then a plain `keras.layers.RNN` whose minimal cell runs only the fused
  state-to-state convolution, an add, the gate split and one `tanh`: what
  the recurrence itself costs (per-step convolutions and Keras's loop),
  which no layer stepped by Keras's loop can go below;
- optional (`--peers`, or `--peers all`): `kc.ConvGRU2D ra=False`,
  `kc.TrajGRU2D` (links=5, flow_filters=32, flow_kernel_size=5), `kc cell
  in keras RNN` (`kc.ConvGRU2DCell` stepped by a plain `keras.layers.RNN`:
  what hoisting the input projection buys), `kc.ConvLSTM2D per-gate`
  (the built-in's eight convolutions per step, one per gate and input,
  inside our layer: the lever "per-gate against fused convolutions"),
  `floor GRU ra=False` and the `conv floor LSTM`/`conv floor GRU` rows
  (the floor without gate math).

Native peers (benchmarks/peers.py), each in its own process:

- `torch ConvLSTM`, `torch ConvGRU`: plain PyTorch as its users write it
  (ndrplz/ConvLSTM_pytorch, happyjin/ConvGRU-pytorch): measured once per
  workload and round with KERAS_BACKEND=torch (Keras is not imported),
  shown in the `torch` column and, for comparison, in the TensorFlow
  columns;
- `flax ConvLSTMCell`: `flax.linen.ConvLSTMCell` stepped by
  `flax.linen.RNN` under `jax.jit`, in the `jax` column. Before timing, the
  worker maps a `kc.ConvLSTM2D`'s weights to Flax's parameters and fails
  unless both give the same outputs (max abs difference < 1e-4). Flax has
  no ConvGRU.

For each: forward and training-step time (median of `--runs` timed runs
after warm-up; training = forward + backward + SGD update, `train_on_batch`
for the Keras models), peak resident memory of the process, achieved
GFLOP/s of the training step from the exact convolution FLOP count
(backward = 2x forward), the ratio to the floor of the same layer type and
setup, and the speed-up over the built-in of the same setup. Every peer is
measured `--rounds` times, round-robin over the setups and peers, each
time in a fresh process; the table gives the median round and the range,
because a shared machine drifts by tens of percent within minutes.

JAX's CPU training of these layers is about 25x slower than TensorFlow's,
so without `--workloads` the `jax` setup (and Flax) runs on `small` only;
`--workloads std --setups jax` runs it on `std`.

Usage:
    python benchmarks/bench_convrnn.py              # small,std, 4 setups
    python benchmarks/bench_convrnn.py --smoke      # every peer once, tiny
    python benchmarks/bench_convrnn.py --setups tf-onednn-on,torch \\
        --workloads small --rounds 1
    python benchmarks/bench_convrnn.py --workloads std --setups jax
"""

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import peers as native  # noqa: E402

WORKLOADS = {
    # name: (batch, time, frame, channels, filters); kernel 3x3, "same".
    "small": (4, 10, 32, 8, 32),
    "std": (8, 10, 64, 16, 64),
    "smoke": (1, 2, 8, 2, 2),
    # Not in the default run.
    "tiny": (4, 10, 16, 8, 16),
    "medium": (8, 10, 32, 16, 32),
    # The same shape as `std`, under its former name (profile_ops.py's
    # default workloads are `small,large`).
    "large": (8, 10, 64, 16, 64),
    "long-T20": (4, 20, 32, 8, 32),
    "long-T40": (4, 40, 32, 8, 32),
    "long-T80": (4, 80, 32, 8, 32),
    "frames-128": (2, 10, 128, 16, 32),
}
DEFAULT_WORKLOADS = ("small", "std")
KERNEL = 3

SETUPS = {
    # name: worker environment, and the `jit_compile` passed to compile.
    "tf-onednn-on": {
        "env": {"KERAS_BACKEND": "tensorflow", "TF_ENABLE_ONEDNN_OPTS": "1"},
        "jit_compile": False,
    },
    "tf-onednn-off": {
        "env": {"KERAS_BACKEND": "tensorflow", "TF_ENABLE_ONEDNN_OPTS": "0"},
        "jit_compile": False,
    },
    "jax": {"env": {"KERAS_BACKEND": "jax"}, "jit_compile": "auto"},
    "torch": {"env": {"KERAS_BACKEND": "torch"}, "jit_compile": "auto"},
    "tf-xla": {
        "env": {"KERAS_BACKEND": "tensorflow", "TF_ENABLE_ONEDNN_OPTS": "1"},
        "jit_compile": True,
    },
}
DEFAULT_SETUPS = ("tf-onednn-on", "tf-onednn-off", "jax", "torch")
# Without --workloads, these setups run on `small` only: JAX's CPU training
# step of a convolutional RNN takes ~2 s on `small` (~25x TensorFlow's).
SLOW_SETUPS = {"jax": ("small",)}

PEERS = {
    # Keras peers: name -> (layer type for the floor, gate count).
    "keras.ConvLSTM2D": ("lstm", 4),
    "kc.ConvLSTM2D": ("lstm", 4),
    # Not in the default run: the issue-13 lever "per-gate against fused
    # convolutions" (see _per_gate_lstm).
    "kc.ConvLSTM2D per-gate": ("lstm", 4),
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
DEFAULT_PEERS = (
    "keras.ConvLSTM2D",
    "kc.ConvLSTM2D",
    "kc.ConvGRU2D",
    "floor LSTM",
    "floor GRU",
    "loop floor LSTM",
    "loop floor GRU",
)
TF_SETUPS = ("tf-onednn-on", "tf-onednn-off", "tf-xla")
NATIVE_PEERS = {
    # name -> (layer type, gates, home setup: the environment its worker
    # runs in, setups whose columns show it).
    "torch ConvLSTM": ("lstm", 4, "torch", TF_SETUPS + ("torch",)),
    "torch ConvGRU": ("gru", 3, "torch", TF_SETUPS + ("torch",)),
    "flax ConvLSTMCell": ("lstm", 4, "jax", ("jax",)),
}
BUILTIN = "keras.ConvLSTM2D"
FLOORS = {
    "lstm": "floor LSTM",
    "gru": "floor GRU",
    "gru ra=False": "floor GRU ra=False",
}
LOOP_FLOORS = {"lstm": "loop floor LSTM", "gru": "loop floor GRU"}


def peer_kind(peer):
    """(layer type, gate count) of a Keras or native peer."""
    if peer in PEERS:
        return PEERS[peer]
    return NATIVE_PEERS[peer][:2]


def conv_flops(batch, steps, frame, channels, filters, gates):
    """Exact multiply-add FLOPs of one forward pass (2 per MAC).

    Per step: the input-to-state convolution (channels -> gates*filters)
    and the state-to-state convolution (filters -> gates*filters), 3x3,
    "same" padding, stride 1, so every output pixel sees 9 taps. The
    PyTorch peers' one convolution over cat(x, h) (channels + filters ->
    gates*filters) is the same count.
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


def train_flops(peer, workload):
    """FLOPs of one training step (forward + backward = 3x forward)."""
    batch, steps, frame, channels, filters = WORKLOADS[workload]
    layer_type, gates = peer_kind(peer)
    if layer_type == "traj":
        return 3 * traj_flops(batch, steps, frame, channels, filters)
    return 3 * conv_flops(batch, steps, frame, channels, filters, gates)


# --------------------------------------------------------------------------
# Worker: peers of one setup on one workload, in this process.
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


def _per_gate_lstm(keras, kc, filters):
    """`kc.ConvLSTM2D` with the built-in's eight convolutions per step.

    The same weights and the same function (outputs equal to
    `keras.layers.ConvLSTM2D`'s with its weights, tested), but each
    gate's input-to-state and state-to-state convolution runs on its own
    slice of the fused kernels, as the built-in runs them, so no split of
    the channel axis follows them; nothing is hoisted. It measures the lever
    "per-gate against fused convolutions" under each oneDNN setting.
    """

    class PerGateConvLSTM2DCell(kc.ConvLSTM2DCell):
        def input_projection(self, inputs):
            # The step's frame itself: recurrent_step convolves it per gate.
            return inputs

        def recurrent_step(self, frame, states, recurrent_dropout_mask=None):
            h_tm1, c_tm1 = states
            gates = []
            for g in range(4):
                block = slice(g * self.filters, (g + 1) * self.filters)
                x = self.convolve(
                    frame,
                    self.kernel[..., block],
                    strides=self.strides,
                    padding=self.padding,
                    dilation_rate=self.dilation_rate,
                )
                if self.use_bias:
                    x = x + self.bias[block]
                gates.append(
                    x + self.convolve(h_tm1, self.recurrent_kernel[..., block])
                )
            x_i, x_f, x_c, x_o = gates
            i = self.recurrent_activation(x_i)
            f = self.recurrent_activation(x_f)
            c = f * c_tm1 + i * self.activation(x_c)
            h = self.recurrent_activation(x_o) * self.activation(c)
            return h, [h, c]

    layer = kc.ConvRNN(
        PerGateConvLSTM2DCell(filters, KERNEL, padding="same"),
        return_sequences=True,
    )
    # Every step convolves its own frame (the projection is the frame).
    layer.max_hoisted_step_elements = 0
    return layer


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
    """A compiled Keras model `Input -> peer` (SGD, MSE) on `workload`;
    `jit` is passed to `compile(jit_compile=...)` (True, False or
    "auto")."""
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
    elif peer == "kc.ConvLSTM2D per-gate":
        outputs = _per_gate_lstm(keras, kc, filters)(inputs)
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


def _inputs(workload):
    """The seeded input batch (channels last) and the zero targets."""
    import numpy as np

    batch, steps, frame, channels, filters = WORKLOADS[workload]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, steps, frame, frame, channels))
    x = x.astype("float32")
    y = np.zeros((batch, steps, frame, frame, filters), "float32")
    return x, y


def _onednn_enabled():
    """Whether TensorFlow runs its oneDNN CPU path in this process (its
    own runtime check, as tests/conftest.py uses)."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def check_setup(setup):
    """Raise unless this process runs `setup`: its Keras backend and, for
    TensorFlow, the oneDNN path its TF_ENABLE_ONEDNN_OPTS asks for.
    Returns what was found, for the report."""
    import keras

    env = SETUPS[setup]["env"]
    backend = keras.backend.backend()
    if backend != env["KERAS_BACKEND"]:
        raise RuntimeError(
            f"setup {setup!r} needs KERAS_BACKEND={env['KERAS_BACKEND']} "
            f"but this process runs Keras on {backend!r}"
        )
    found = {"backend": backend}
    if backend == "tensorflow":
        found["onednn"] = _onednn_enabled()
        if found["onednn"] != (env["TF_ENABLE_ONEDNN_OPTS"] == "1"):
            raise RuntimeError(
                f"setup {setup!r} asks for TF_ENABLE_ONEDNN_OPTS="
                f"{env['TF_ENABLE_ONEDNN_OPTS']} but TensorFlow's oneDNN "
                f"path is {'on' if found['onednn'] else 'off'} here "
                f"(TF_ENABLE_ONEDNN_OPTS="
                f"{os.environ.get('TF_ENABLE_ONEDNN_OPTS', '<unset>')})"
            )
    return found


def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_keras_peer(setup, peer, workload, warmup, runs, min_seconds=0.0):
    """Time `model.predict_on_batch` and `model.train_on_batch` of a Keras
    peer in this process, which must run `setup` (see `check_setup`)."""
    import numpy as np

    found = check_setup(setup)
    x, y = _inputs(workload)
    model = _build_model(peer, workload, SETUPS[setup]["jit_compile"])

    def forward():
        np.asarray(model.predict_on_batch(x))

    def train():
        model.train_on_batch(x, y)

    return {
        **_timings(forward, train, warmup, runs, min_seconds),
        # What compile(jit_compile="auto") resolved to, for the report.
        "jit_compile": bool(model.jit_compile),
        **found,
    }


def _timings(forward, train, warmup, runs, min_seconds):
    """Median forward and training-step times, run counts and peak RSS."""
    fwd_ms, fwd_runs = _median_ms(forward, warmup, runs, min_seconds)
    train_ms, train_runs = _median_ms(train, warmup, runs, min_seconds)
    return {
        "fwd_ms": fwd_ms,
        "train_ms": train_ms,
        "fwd_runs": fwd_runs,
        "train_runs": train_runs,
        "rss_mb": _peak_rss_mb(),
    }


def run_native_peer(peer, workload, warmup, runs, min_seconds=0.0):
    """Time the forward and the training step of a native peer
    (benchmarks/peers.py) in this process. The Flax peer first checks its
    weight mapping against `kc.ConvLSTM2D` (Keras on JAX) and raises if
    the outputs differ."""
    x, _ = _inputs(workload)
    filters = WORKLOADS[workload][4]
    extra = {}
    if peer.startswith("torch "):
        import torch

        forward, train = native.build_torch(
            NATIVE_PEERS[peer][0], x, filters, KERNEL
        )
        extra["torch_threads"] = torch.get_num_threads()
    elif peer == "flax ConvLSTMCell":
        params, diff = native.check_flax_matches_kc(x, filters, KERNEL)
        forward, train = native.build_flax(x, filters, KERNEL, params)
        extra["max_abs_diff_vs_kc"] = diff
    else:
        raise ValueError(f"unknown native peer {peer!r}")
    return {**_timings(forward, train, warmup, runs, min_seconds), **extra}


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


def _median_round(results):
    """One row from a peer's rounds: the median round's times (by training
    step; the lower middle one for an even count), every round's training
    time, and the largest peak memory."""
    ordered = sorted(results, key=lambda r: r["train_ms"])
    row = dict(ordered[(len(ordered) - 1) // 2])
    row["train_rounds_ms"] = [r["train_ms"] for r in results]
    row["rss_mb"] = max(r["rss_mb"] for r in results)
    return row


def run_worker_process(cmd, what, **env):
    """Run a benchmark worker in a fresh process and return what it
    prints on its `RESULT ` line, as JSON (shared by the benchmark
    scripts); `env` is added to this process's environment."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **env)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
    raise RuntimeError(f"worker failed: {what}")


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
        "--workloads",
        workload,
        "--warmup",
        str(warmup),
        "--runs",
        str(runs),
        "--min-seconds",
        str(min_seconds),
    ]
    return run_worker_process(
        cmd,
        f"{setup}: {', '.join(peers)} on {workload}",
        **SETUPS[setup]["env"],
    )


def write_results(out, report, payload):
    """Write the markdown report to `out` and `payload` next to it as JSON."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        f.write(report)
    with open(os.path.splitext(out)[0] + ".json", "w") as f:
        json.dump(payload, f, indent=1)
    print(f"written to {out}", file=sys.stderr)


FRAMEWORKS = (
    "keras",
    "tensorflow-cpu",
    "tensorflow",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "torch",
    "numpy",
)


def _machine():
    """CPU, cores, date and the installed version of every framework,
    without importing any of them."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for name in FRAMEWORKS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "versions": versions,
        "date": datetime.date.today().isoformat(),
    }


def _environment():
    """`_machine()` plus this process's Keras backend (bench_memory.py)."""
    import keras

    return dict(_machine(), backend=keras.backend.backend())


def _label(workload):
    batch, steps, frame, channels, filters = WORKLOADS[workload]
    return f"B{batch} T{steps} {frame}x{frame} C{channels} F{filters}"


def _lookup(rows, workload, setup, peer):
    """The row a table shows for `peer` in `setup`'s columns, and whether
    it was measured in another setup's environment (a native peer shown
    for comparison), or (None, False)."""
    if peer in NATIVE_PEERS:
        _, _, home, compared_in = NATIVE_PEERS[peer]
        if setup not in compared_in:
            return None, False
        row = rows.get((workload, home, peer))
        return row, row is not None and setup != home
    return rows.get((workload, setup, peer)), False


def _setup_cells(rows, workload, setup, peer):
    """A peer's cells in one setup's columns: train ms [range], fwd ms,
    speed-up over the built-in, ratio to the floor, GFLOP/s, RSS MB."""
    r, elsewhere = _lookup(rows, workload, setup, peer)
    if r is None:
        return ["-"] * 6
    mark = "†" if elsewhere else ""
    builtin = rows.get((workload, setup, BUILTIN))
    floor = rows.get((workload, setup, FLOORS.get(peer_kind(peer)[0])))
    rounds = r.get("train_rounds_ms", [r["train_ms"]])
    train = f"{r['train_ms']:.1f}"
    if len(rounds) > 1:
        train += f" [{min(rounds):.1f}-{max(rounds):.1f}]"
    speedup = f"{builtin['train_ms'] / r['train_ms']:.2f}x" if builtin else "-"
    ratio = f"{r['train_ms'] / floor['train_ms']:.2f}" if floor else "-"
    gflops = train_flops(peer, workload) / (r["train_ms"] / 1000) / 1e9
    return [
        train + mark,
        f"{r['fwd_ms']:.1f}{mark}",
        speedup,
        ratio,
        f"{gflops:.1f}",
        f"{r['rss_mb']:.0f}{mark}",
    ]


def _table(rows, workload, setups, peers):
    """One workload's markdown table: a row per peer, six columns per
    setup."""
    names = ["train ms", "fwd ms", "vs built-in", "vs floor", "GFLOP/s"]
    names.append("RSS MB")
    header = "| peer | " + " | ".join(f"{s} {n}" for s in setups for n in names)
    lines = [
        header + " |",
        "| --- |" + " ---: |" * (len(names) * len(setups)),
    ]
    for peer in peers:
        cells = [
            c for s in setups for c in _setup_cells(rows, workload, s, peer)
        ]
        if any(c != "-" for c in cells):
            lines.append(f"| {peer} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fastest(candidates):
    name, r = min(candidates, key=lambda item: item[1]["train_ms"])
    return f"{name} ({r['train_ms']:.1f})"


def _summary(rows, workloads, setups_run):
    """The "which layer to pick" table: per workload and setup, the
    training step of each layer and the fastest, overall and of the
    ConvLSTMs."""
    lines = [
        "| workload | setup | kc.ConvLSTM2D | kc.ConvGRU2D | "
        "keras.ConvLSTM2D | native ConvLSTM | native ConvGRU | "
        "fastest ConvLSTM | fastest |",
        "| --- | --- | ---: | ---: | ---: | --- | --- | --- | --- |",
    ]
    for workload in workloads:
        for setup in setups_run[workload]:
            cells, candidates = [], []
            for peer in ("kc.ConvLSTM2D", "kc.ConvGRU2D", BUILTIN):
                r = rows.get((workload, setup, peer))
                cells.append(f"{r['train_ms']:.1f}" if r else "-")
                if r:
                    candidates.append((peer, r))
            for layer_type in ("lstm", "gru"):
                found = []
                for peer, spec in NATIVE_PEERS.items():
                    r, elsewhere = _lookup(rows, workload, setup, peer)
                    if spec[0] == layer_type and r is not None:
                        mark = "†" if elsewhere else ""
                        found.append(f"{peer} {r['train_ms']:.1f}{mark}")
                        candidates.append((peer, r))
                if found:
                    cells.append(", ".join(found))
                elif setup == "jax" and layer_type == "gru":
                    cells.append("none (Flax has no ConvGRU)")
                else:
                    cells.append("-")
            lstms = [c for c in candidates if peer_kind(c[0])[0] == "lstm"]
            cells.append(_fastest(lstms) if lstms else "-")
            cells.append(_fastest(candidates) if candidates else "-")
            lines.append(
                f"| {workload} | {setup} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines) + "\n"


def _setup_line(setup, rows):
    """How a setup's workers ran: their environment, and what they found
    (TensorFlow's oneDNN path, the resolved jit_compile)."""
    env = " ".join(f"{k}={v}" for k, v in SETUPS[setup]["env"].items())
    found = [r for (_, s, p), r in rows.items() if s == setup and p in PEERS]
    parts = [f"`{setup}`: {env}"]
    onednn = {r["onednn"] for r in found if "onednn" in r}
    if onednn:
        parts.append(
            "oneDNN active in every worker"
            if onednn == {True}
            else "oneDNN off in every worker"
            if onednn == {False}
            else "oneDNN on in some workers, off in others"
        )
    jit = {r["jit_compile"] for r in found if "jit_compile" in r}
    requested = SETUPS[setup]["jit_compile"]
    parts.append(
        f"compile(jit_compile={requested!r})"
        + (f" -> {', '.join(str(j) for j in sorted(jit))}" if jit else "")
    )
    return "- " + ", ".join(parts)


def report(rows, workloads, setups_run, peers, meta):
    """The markdown report: header, one table per workload, summary."""
    machine = meta["machine"]
    setups = [s for s in SETUPS if any(s in setups_run[w] for w in workloads)]
    lines = [
        f"# keras-convgru benchmark, {machine['date']}",
        "",
        f"- CPU: {machine['cpu']}, {machine['cores']} cores",
        "- versions: "
        + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()),
        "- setups (the columns), each worker's environment set before "
        "Keras is imported:",
    ]
    lines += ["  " + _setup_line(s, rows) for s in setups]
    if meta["mode"] == "measure":
        lines.append(
            f"- {meta['rounds']} round(s), every peer once per round in its "
            "own process, round-robin over setups and peers; per round the "
            f"median of at least {meta['runs']} timed runs (and at least "
            f"{meta['min_seconds']} s of runs, at most 200) after "
            f"{meta['warmup']} warm-up; a table gives the median round and, "
            "in brackets, the fastest and slowest round"
        )
    else:
        where = (
            "all in one process"
            if meta["mode"] == "smoke in-process"
            else "one process per setup"
        )
        lines.append(
            "- smoke run: every peer once, 1 timed run after 1 warm-up, "
            f"{where}: the numbers mean nothing"
        )
    lines += [
        "- train = forward + backward + SGD update (`train_on_batch` for "
        "the Keras models; loss, backward and `optimizer.step()` for plain "
        "PyTorch; one jitted loss + `jax.value_and_grad` + `optax.sgd` "
        "for Flax), MSE against zeros of the output sequence, lr 0.01; "
        "fwd = `predict_on_batch`, `torch.no_grad()`, jitted `apply`; "
        "float32, 3x3 kernels, padding same, return_sequences=True",
        "- vs built-in: the built-in `keras.ConvLSTM2D`'s training time in "
        "the same setup over the row's; vs floor: the row's over the "
        "floor of its layer type in the same setup; GFLOP/s: the "
        "training step's convolution FLOPs (backward = 2x forward) per "
        "second; RSS MB: the worker's peak resident memory",
    ]
    measured = {p for (_, _, p) in rows}
    if any(s in TF_SETUPS for s in setups) and measured & {
        p for p in NATIVE_PEERS if p.startswith("torch ")
    }:
        lines.append(
            "- † plain PyTorch, measured in its own process "
            "(KERAS_BACKEND=torch, Keras not imported, PyTorch's default "
            "threads) and repeated in the TensorFlow columns to compare "
            "with them"
        )
    if "flax ConvLSTMCell" in measured:
        lines.append(
            "- the Flax worker's memory includes Keras and the "
            "`kc.ConvLSTM2D` its weights are checked against (max abs "
            "difference of the outputs < 1e-4, else the worker fails)"
        )
    lines.append("")
    for workload in workloads:
        run = setups_run[workload]
        lines += [f"## {workload}: {_label(workload)}", ""]
        lines.append(_table(rows, workload, run, peers))
        skipped = [s for s in setups if s not in run]
        if skipped:
            lines.append(
                f"Not run on {workload}: {', '.join(skipped)} (JAX on CPU "
                "runs on `small` only by default; `--workloads "
                f"{workload} --setups jax` runs it).\n"
            )
        if "jax" in run:
            lines.append(
                "Flax has no ConvGRU: on JAX the ConvGRU row is "
                "`kc.ConvGRU2D` alone.\n"
            )
    lines += [
        "## Which layer to pick",
        "",
        "Training step, ms (median round); the fastest ConvLSTM and the "
        "fastest layer of each setup.",
        "",
        _summary(rows, workloads, setups_run),
    ]
    return "\n".join(lines)


def _parse_list(value, known, what, parser):
    items = [v.strip() for v in value.split(",") if v.strip()]
    for item in items:
        if item not in known:
            parser.error(f"unknown {what} {item!r}; one of {list(known)}")
    return items


def plan(workloads, setups, peers, explicit_workloads):
    """What to run per workload: `{workload: (setups, keras peers, native
    peers)}`. Without explicit workloads the slow setups run only on
    theirs; a native peer runs where a setup that shows it runs."""
    keras_peers = [p for p in peers if p in PEERS]
    out = {}
    for workload in workloads:
        run = [
            s
            for s in setups
            if explicit_workloads or workload in SLOW_SETUPS.get(s, (workload,))
        ]
        natives = [
            p
            for p in peers
            if p in NATIVE_PEERS and set(NATIVE_PEERS[p][3]) & set(run)
        ]
        out[workload] = (run, keras_peers, natives)
    return out


def _progress(workload, setup, round_index, rounds, result):
    print(
        f"  {workload:>6} {setup:<14} round {round_index + 1}/{rounds} "
        f"{result['peer']:<24} fwd {result['fwd_ms']:9.1f} ms  "
        f"train {result['train_ms']:9.1f} ms",
        file=sys.stderr,
        flush=True,
    )


def _smoke(todo, in_process):
    """Every peer once, on the tiny workload: one process per setup (its
    Keras peers and the native peers at home in it), one per home of the
    other native peers; or all in this process."""
    rows = {}
    for workload, (setups, keras_peers, natives) in todo.items():
        groups = [(s, list(keras_peers)) for s in setups]
        for peer in natives:
            home = NATIVE_PEERS[peer][2]
            group = next((g for g in groups if g[0] == home), None)
            if group is None:
                group = (home, [])
                groups.append(group)
            group[1].append(peer)
        for setup, group_peers in groups:
            if in_process:
                results = run_worker(setup, group_peers, workload, 1, 1)
            else:
                results = _spawn(setup, group_peers, workload, 1, 1, 0.0)
            for result in results:
                _progress(workload, setup, 0, 1, result)
                rows[(workload, setup, result["peer"])] = result
    return rows


def _measure(todo, rounds, warmup, runs, min_seconds):
    """Every peer `rounds` times, each time in a fresh process; per
    workload, round-robin: every (setup, peer) once per round, so slow
    drifts of a shared machine hit all alike. The median round is kept."""
    rows = {}
    for workload, (setups, keras_peers, natives) in todo.items():
        jobs = [(s, p) for s in setups for p in keras_peers]
        jobs += [(NATIVE_PEERS[p][2], p) for p in natives]
        measured = {job: [] for job in jobs}
        for round_index in range(rounds):
            for setup, peer in jobs:
                (result,) = _spawn(
                    setup, [peer], workload, warmup, runs, min_seconds
                )
                _progress(workload, setup, round_index, rounds, result)
                measured[(setup, peer)].append(result)
        for (setup, peer), results in measured.items():
            rows[(workload, setup, peer)] = _median_round(results)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--workloads",
        default=None,
        help=f"comma-separated, of {list(WORKLOADS)}; default "
        f"{','.join(DEFAULT_WORKLOADS)} (jax on small only)",
    )
    parser.add_argument(
        "--setups",
        default=",".join(DEFAULT_SETUPS),
        help=f"comma-separated, of {list(SETUPS)}",
    )
    parser.add_argument(
        "--peers",
        default=None,
        help="comma-separated, or `all`; default: "
        f"{', '.join(DEFAULT_PEERS + tuple(NATIVE_PEERS))}",
    )
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
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="every peer of every selected setup once on the `smoke` "
        "workload (one process per setup); nothing written without --out",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="with --smoke: run everything in this process, which must "
        "run the one selected setup (the tests' way)",
    )
    parser.add_argument("--out", default=None, help="results file (.md)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    known_peers = list(PEERS) + list(NATIVE_PEERS)
    if args.peers in (None, ""):
        peers = list(DEFAULT_PEERS) + list(NATIVE_PEERS)
    elif args.peers == "all":
        peers = known_peers
    else:
        peers = _parse_list(args.peers, known_peers, "peer", parser)
    setups = _parse_list(args.setups, SETUPS, "setup", parser)

    if args.worker:
        results = run_worker(
            setups[0],
            peers,
            args.workloads,
            args.warmup,
            args.runs,
            args.min_seconds,
        )
        print("RESULT " + json.dumps(results), flush=True)
        return 0

    if args.smoke:
        workloads = ["smoke"]
    elif args.workloads:
        workloads = _parse_list(args.workloads, WORKLOADS, "workload", parser)
    else:
        workloads = list(DEFAULT_WORKLOADS)
    if args.in_process and not (args.smoke and len(setups) == 1):
        parser.error("--in-process needs --smoke and exactly one setup")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    todo = plan(workloads, setups, peers, bool(args.workloads) or args.smoke)

    if args.smoke:
        rounds, warmup, runs, min_seconds = 1, 1, 1, 0.0
        rows = _smoke(todo, args.in_process)
    else:
        rounds, warmup, runs = args.rounds, args.warmup, args.runs
        min_seconds = args.min_seconds
        rows = _measure(todo, rounds, warmup, runs, min_seconds)

    meta = {
        "mode": (
            "measure"
            if not args.smoke
            else "smoke in-process"
            if args.in_process
            else "smoke"
        ),
        "machine": _machine(),
        "rounds": rounds,
        "warmup": warmup,
        "runs": runs,
        "min_seconds": min_seconds,
    }
    setups_run = {w: todo[w][0] for w in workloads}
    text = report(rows, workloads, setups_run, peers, meta)
    print(text)
    if not args.smoke or args.out:
        name = f"{meta['machine']['date']}-cpu-{'-'.join(setups)}"
        if args.workloads:
            name += "-" + "-".join(workloads)
        out = args.out or os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "results", name + ".md"
        )
        payload = dict(
            meta,
            setups={s: SETUPS[s] for s in setups},
            workloads={w: WORKLOADS[w] for w in workloads},
            setups_run=setups_run,
            rows=[
                dict(r, workload=w, setup=s, peer=p)
                for (w, s, p), r in rows.items()
            ],
        )
        write_results(out, text, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
