"""Where a training step's time goes, per kind of TensorFlow op.

Profiles `model.train_on_batch` of the peers of `bench_convrnn.py` with
TensorFlow's profiler and sums the executor's time per op kind
(convolutions forward and backward, the gate math, the loop's tensor lists,
splits and concatenations, ...), per training step. Each peer runs in its
own process. The op times are summed over TensorFlow's inter-op threads,
so a row's total can exceed the wall time when ops overlap; the wall time
is the median of the profiled steps. With TensorFlow's oneDNN CPU path on
(`TF_ENABLE_ONEDNN_OPTS=1`, its default on CPUs with AVX-512) ops run under
oneDNN's names (`_MklNativeConv2D`, ...); they count as the ops they stand
for, and every result says which path ran (`onednn`).

Usage (TensorFlow backend only):
    python benchmarks/profile_ops.py
    python benchmarks/profile_ops.py --workloads large \
        --peers kc.ConvGRU2D,"floor GRU"
"""

import argparse
import collections
import datetime
import glob
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_convrnn  # noqa: E402

CATEGORIES = [
    # (category, op types); anything unlisted is "other". oneDNN's names
    # are mapped to these by `_base_op_type`.
    (
        "conv forward",
        {"Conv2D", "_FusedConv2D", "_PadWithConv2D", "_PadWithFusedConv2D"},
    ),
    ("conv grad wrt input", {"Conv2DBackpropInput"}),
    (
        "conv grad wrt kernel",
        # oneDNN fuses the bias gradient into the kernel gradient.
        {"Conv2DBackpropFilter", "Conv2DBackpropFilterWithBias"},
    ),
    (
        "gate math",
        {
            "AddV2",
            "Add",
            "Sub",
            "Mul",
            "Sigmoid",
            "Tanh",
            "SigmoidGrad",
            "TanhGrad",
            "BiasAdd",
            "BiasAddGrad",
            "Neg",
            "AddN",
            "_FusedMulAdd",
            "_FusedMulSub",
            "_FusedMulAdd2",
            "Square",
            "Mean",
            "Sum",
            "RealDiv",
        },
    ),
    (
        "split / concat / slice",
        {
            "Split",
            "SplitV",
            "ConcatV2",
            "Slice",
            "StridedSlice",
            "StridedSliceGrad",
            "Pack",
            "Unpack",
            "Pad",
        },
    ),
    ("transpose / reshape", {"Transpose", "Reshape", "ExpandDims", "Squeeze"}),
    (
        "loop tensor lists",
        {
            "TensorListGetItem",
            "TensorListSetItem",
            "TensorListPushBack",
            "TensorListPopBack",
            "TensorListStack",
            "TensorListFromTensor",
            "TensorListReserve",
            "TensorListElementShape",
            "TensorListLength",
        },
    ),
]


# Ops whose time includes the ops they run.
CONTAINERS = {
    "While",
    "StatelessWhile",
    "If",
    "StatelessIf",
    "PartitionedCall",
    "StatefulPartitionedCall",
}


# With oneDNN on (TF_ENABLE_ONEDNN_OPTS=1, TensorFlow's default on x86 CPUs
# with AVX-512) TensorFlow's graph rewrite runs ops under oneDNN names:
# `_MklNativeConv2D`, `_MklNativeFusedConv2D` (convolution + bias add),
# `_MklNativeConv2DBackpropInput`, `_MklNativeConv2DBackpropFilter`,
# `_MklNativeConv2DBackpropFilterWithBias` (+ the bias gradient),
# `_MklTranspose`, ... (seen in profiles on TensorFlow 2.21).
ONEDNN_PREFIXES = ("_MklNative", "_Mkl")


def _base_op_type(op_type):
    """The TensorFlow op a oneDNN op stands for (`_MklNativeConv2D` ->
    `Conv2D`, `_MklNativeFusedConv2D` -> `_FusedConv2D`); others as is."""
    for prefix in ONEDNN_PREFIXES:
        if op_type.startswith(prefix):
            base = op_type[len(prefix) :]
            # TensorFlow's own fused ops are internal, "_"-prefixed ones.
            if base.startswith(("Fused", "PadWith")):
                base = "_" + base
            return base
    return op_type


def _category(op_type):
    base = _base_op_type(op_type)
    for name, types in CATEGORIES:
        if base in types:
            return name
    return "other"


def _onednn_enabled():
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def run_worker(peer, workload, steps):
    import numpy as np
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    batch, time_steps, frame, channels, filters = bench_convrnn.WORKLOADS[
        workload
    ]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, time_steps, frame, frame, channels))
    x = x.astype("float32")
    y = np.zeros((batch, time_steps, frame, frame, filters), "float32")
    model = bench_convrnn._build_model(peer, workload, False)
    for _ in range(3):
        model.train_on_batch(x, y)
    walls = []
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(steps):
            start = time.perf_counter()
            model.train_on_batch(x, y)
            walls.append(time.perf_counter() - start)
        tf.profiler.experimental.stop()
        (path,) = glob.glob(
            os.path.join(logdir, "**", "*.xplane.pb"), recursive=True
        )
        space = xplane_pb2.XSpace()
        with open(path, "rb") as f:
            space.ParseFromString(f.read())
    time_ms = collections.Counter()
    count = collections.Counter()
    other_ms = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                # Executor op events are named "<node name>:<op type>";
                # function calls and loops contain other ops' time.
                if ":" not in name or "::" in name:
                    continue
                op_type = name.rsplit(":", 1)[1].strip()
                if op_type.startswith("__") or op_type in CONTAINERS:
                    continue
                category = _category(op_type)
                ms = event.duration_ps / 1e9 / steps
                time_ms[category] += ms
                count[category] += 1 / steps
                if category == "other":
                    other_ms[op_type] += ms
    walls.sort()
    return {
        "wall_ms": 1000 * walls[len(walls) // 2],
        "onednn": _onednn_enabled(),
        "op_ms": dict(time_ms),
        "op_count": dict(count),
        # What "other" is made of, by op type as the profiler names it.
        "other_op_ms": dict(other_ms.most_common()),
    }


def _spawn(peer, workload, steps):
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        "--peers",
        peer,
        "--workloads",
        workload,
        "--steps",
        str(steps),
    ]
    return bench_convrnn.run_worker_process(
        cmd, f"{peer} {workload}", KERAS_BACKEND="tensorflow"
    )


def markdown(results):
    names = [name for name, _ in CATEGORIES] + ["other"]
    head = "| workload | peer | wall ms | " + " | ".join(names)
    head += " | ops/step |\n"
    head += "| --- | --- | ---: |" + " ---: |" * (len(names) + 1) + "\n"
    rows = []
    for (workload, peer), r in results.items():
        cells = [f"{r['op_ms'].get(n, 0.0):.1f}" for n in names]
        ops_per_step = round(sum(r["op_count"].values()))
        rows.append(
            f"| {workload} | {peer} | {r['wall_ms']:.1f} | "
            + " | ".join(cells)
            + f" | {ops_per_step} |"
        )
    return head + "\n".join(rows) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="small,large")
    parser.add_argument(
        "--peers",
        default=",".join(
            [
                "keras.ConvLSTM2D",
                "kc.ConvLSTM2D",
                "floor LSTM",
                "kc.ConvGRU2D",
                "floor GRU",
            ]
        ),
    )
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--worker", action="store_true")
    parser.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "results")
    )
    args = parser.parse_args()
    peers = args.peers.split(",")
    workloads = args.workloads.split(",")
    if args.worker:
        result = run_worker(peers[0], workloads[0], args.steps)
        print("RESULT " + json.dumps(result))
        return
    results = {}
    for workload in workloads:
        for peer in peers:
            result = _spawn(peer, workload, args.steps)
            results[(workload, peer)] = result
            print(f"{workload} {peer}: {result['wall_ms']:.1f} ms")
    table = markdown(results)
    print(table)
    stamp = datetime.date.today().isoformat()
    paths = {r["onednn"] for r in results.values()}
    path = " / ".join("oneDNN on" if p else "oneDNN off" for p in paths)
    bench_convrnn.write_results(
        os.path.join(args.out, "profile-cpu-tensorflow.md"),
        f"# Training-step time per op kind, TensorFlow CPU ({stamp})\n\n"
        "Summed executor time per op kind, ms per training step "
        f"(benchmarks/profile_ops.py), {path}.\n\n" + table,
        [{"workload": w, "peer": p, **r} for (w, p), r in results.items()],
    )


if __name__ == "__main__":
    main()
