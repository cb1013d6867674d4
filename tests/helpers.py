"""What the test modules share; no test module imports another.

* The class tables: which class is the ConvGRU, ConvLSTM or TrajGRU layer
  or cell of a rank (`GRU_LAYERS`, ..., `LAYERS`, `CELLS`), and
  `FAMILIES`, one `Family` per recurrent family with a factory for a
  small layer or cell, its random weights and its NumPy reference. The
  concern modules (saving, portability, gradients, hoisting, ...)
  parametrize over `FAMILIES`, so a family added there gets their tests.
* The weight layouts the API reference states (docs/api/conv_gru.md,
  docs/api/conv_lstm.md, docs/api/traj_gru.md: the weight tables),
  written out here independently of the package, so that a layer with a
  wrong layout fails `set_weights`; and random weights in them.
* `assert_close`: closeness of (nests of) tensors.
* `Job`, `run` and `run_parallel`: commands and functions of the test
  modules in fresh processes, with their own environment, a deadline,
  and every process group killed before returning.
* `backend_functions` and `probe_directions`: the backends' own autodiff,
  and the random directions of the gradient checks.
"""

import collections
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
import reference
import reference_memory
import reference_traj
from keras import ops

import keras_convgru as kc

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(TESTS_DIR)

# --------------------------------------------------------------------------
# Classes by family and rank
# --------------------------------------------------------------------------

RANKS = (1, 2, 3)
GRU_LAYERS = {1: kc.ConvGRU1D, 2: kc.ConvGRU2D, 3: kc.ConvGRU3D}
LSTM_LAYERS = {1: kc.ConvLSTM1D, 2: kc.ConvLSTM2D, 3: kc.ConvLSTM3D}
GRU_CELLS = {1: kc.ConvGRU1DCell, 2: kc.ConvGRU2DCell, 3: kc.ConvGRU3DCell}
LSTM_CELLS = {1: kc.ConvLSTM1DCell, 2: kc.ConvLSTM2DCell, 3: kc.ConvLSTM3DCell}
TRAJ_GRU_LAYERS = {2: kc.TrajGRU2D}
TRAJ_GRU_CELLS = {2: kc.TrajGRU2DCell}
# The memory cells (../shared/API.md, "Spatiotemporal memory cells"): the
# weight names in the contract's order, and the gate blocks of each (the
# gradient check probes each block on its own).
MEMORY_WEIGHT_BLOCKS = {
    "st_lstm": {
        "kernel": 7,
        "recurrent_kernel": 4,
        "memory_kernel": 3,
        "output_kernel": 1,
        "fusion_kernel": 1,
        "bias": 7,
    },
    "causal_lstm": {
        "kernel": 7,
        "recurrent_kernel": 4,
        "cell_kernel": 3,
        "memory_kernel": 3,
        "cell_to_memory_kernel": 4,
        "memory_output_kernel": 1,
        "fusion_kernel": 1,
        "bias": 7,
    },
    "sa_conv_lstm": {
        "kernel": 4,
        "recurrent_kernel": 4,
        "bias": 4,
        "attention_kernel": 1,
        "attention_bias": 1,
        "memory_attention_kernel": 1,
        "memory_attention_bias": 1,
        "attention_output_kernel": 2,
        "attention_output_bias": 2,
        "memory_gate_kernel": 3,
        "memory_gate_bias": 3,
    },
}
# Keyed by (family, rank), family "gru" or "lstm" (the families with every
# rank and the common convolution arguments).
LAYERS = {
    **{("gru", rank): cls for rank, cls in GRU_LAYERS.items()},
    **{("lstm", rank): cls for rank, cls in LSTM_LAYERS.items()},
}
CELLS = {
    **{("gru", rank): cls for rank, cls in GRU_CELLS.items()},
    **{("lstm", rank): cls for rank, cls in LSTM_CELLS.items()},
}
GATES = {"gru": 3, "lstm": 4}

# --------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------


def random_weights(shapes, rng, scale, dtype="float32"):
    """Normal arrays of the given shapes, drawn in order.

    `shapes`: a list of shapes (returns a list) or a dict of them by name
    (returns a dict). `dtype=None` keeps NumPy's float64.
    """
    items = shapes.items() if isinstance(shapes, dict) else enumerate(shapes)
    drawn = {}
    for key, shape in items:
        array = rng.normal(scale=scale, size=shape)
        drawn[key] = array if dtype is None else array.astype(dtype)
    return drawn if isinstance(shapes, dict) else list(drawn.values())


def randomize_weights(layer, rng, scale):
    """Sets random weights on a built layer (or cell); returns them."""
    weights = random_weights([w.shape for w in layer.weights], rng, scale)
    layer.set_weights(weights)
    return weights


def contract_weight_shapes(
    family,
    kernel_size,
    in_channels,
    filters,
    use_bias=True,
    reset_after=True,
    peepholes=None,
    normalization=None,
    state_spatial=None,
    data_format="channels_last",
):
    """The weights' shapes in the documented order: `kernel`,
    `recurrent_kernel`, (maybe) `bias`, (LSTM, maybe) `peephole_kernel`,
    then with `normalization` the `gamma`, `beta` pairs of
    `norm_weight_names`. `state_spatial` is needed for `peepholes="full"`.
    """
    units = GATES[family] * filters
    shapes = [
        tuple(kernel_size) + (in_channels, units),
        tuple(kernel_size) + (filters, units),
    ]
    if use_bias:
        two_biases = family == "gru" and reset_after
        shapes.append((2, units) if two_biases else (units,))
    if peepholes == "channel":
        shapes.append((3, filters))
    elif peepholes == "full":
        if data_format == "channels_last":
            shapes.append((3, *state_spatial, filters))
        else:
            shapes.append((3, filters, *state_spatial))
    if normalization is not None:
        for _, blocks in norm_blocks(family, reset_after):
            shapes += [(blocks * filters,)] * 2
    return shapes


def norm_blocks(family, reset_after=True):
    """The normalized terms, as documented: (sublayer name, gate blocks)."""
    if family == "lstm":
        return [("input_norm", 4), ("recurrent_norm", 4), ("cell_norm", 1)]
    if reset_after:
        return [("input_norm", 3), ("recurrent_norm", 3)]
    return [("input_norm", 3), ("recurrent_norm", 2), ("candidate_norm", 1)]


# TrajGRU: the weight table of docs/api/traj_gru.md, in the cells' order.
TRAJ_GRU_WEIGHT_NAMES = (
    "kernel",
    "recurrent_kernel",
    "bias",
    "flow_input_kernel",
    "flow_state_kernel",
    "flow_bias",
    "flow_kernel",
    "flow_output_bias",
)
TRAJ_GRU_BIASES = ("bias", "flow_bias", "flow_output_bias")
# What the flow generator's output convolution and bias are set to.
FLOW_KINDS = ("zero", "integer", "fractional", "outside", "field")


def traj_gru_weight_shapes(channels, filters, links, flow_filters, k=3, fk=3):
    """The weight table of docs/api/traj_gru.md, channels_last; `k`, `fk`:
    the (square) kernel and flow kernel sizes."""
    return {
        "kernel": (k, k, channels, 3 * filters),
        "recurrent_kernel": (1, 1, links * filters, 3 * filters),
        "bias": (2, 3 * filters),
        "flow_input_kernel": (fk, fk, channels, flow_filters),
        "flow_state_kernel": (fk, fk, filters, flow_filters),
        "flow_bias": (flow_filters,),
        "flow_kernel": (fk, fk, flow_filters, 2 * links),
        "flow_output_bias": (2 * links,),
    }


def traj_gru_weights(
    rng,
    links,
    flow="field",
    use_bias=True,
    scale=0.4,
    channels=2,
    filters=3,
    flow_filters=4,
):
    """TrajGRU weights (float64, by name); `flow` sets the flows' kind.

    "zero", "integer", "fractional" and "outside" zero the flow
    generator's output kernel (the rest of the generator stays random),
    so every pixel gets the flows of the output bias; "field" draws it at
    random, so the flows vary over the frame (by a few pixels, fractional,
    some pointing out of the frame).
    """
    shapes = traj_gru_weight_shapes(channels, filters, links, flow_filters)
    w = random_weights(shapes, rng, scale, dtype=None)
    if flow == "field":
        fan_in = np.prod(shapes["flow_kernel"][:-1])
        w["flow_kernel"] *= 3.0 / (scale * np.sqrt(fan_in))
        w["flow_output_bias"] = rng.normal(scale=1.0, size=2 * links)
    else:
        w["flow_kernel"] = np.zeros(shapes["flow_kernel"])
        shifts = {
            "zero": np.zeros(2 * links),
            "integer": rng.integers(-2, 3, size=2 * links).astype(float),
            "fractional": rng.uniform(-2.5, 2.5, size=2 * links),
            # Link 0 entirely outside, the others partly.
            "outside": np.array([7.5, -0.4, -3.3, 4.6, 0.7, -5.2])[: 2 * links],
        }
        w["flow_output_bias"] = shifts[flow]
        if not use_bias and flow != "zero":
            raise ValueError("constant flows need the flow output bias")
    if not use_bias:
        for name in TRAJ_GRU_BIASES:
            del w[name]
    return w


def set_weights_by_name(cell, weights):
    """Assigns weights by name; every weight of the cell, no other."""
    by_name = {v.name: v for v in cell.weights}
    assert set(by_name) == set(weights)
    for name, value in weights.items():
        by_name[name].assign(np.asarray(value).astype(by_name[name].dtype))


# --------------------------------------------------------------------------
# The families
# --------------------------------------------------------------------------


def _conv_cell_weights(cell, rng, scale):
    return random_weights([w.shape for w in cell.weights], rng, scale)


def _traj_gru_cell_weights(cell, rng, scale):
    """Field flows (varying, fractional, leaving the frame), in the cell's
    weight order."""
    kernel = next(w for w in cell.weights if w.name == "kernel")
    weights = traj_gru_weights(
        rng,
        cell.links,
        "field",
        use_bias=cell.use_bias,
        scale=scale,
        channels=kernel.shape[-2],
        filters=cell.filters,
        flow_filters=cell.flow_filters,
    )
    assert tuple(cell.kernel_size) == (3, 3)
    assert tuple(cell.flow_kernel_size) == (3, 3)
    return [weights[w.name].astype("float32") for w in cell.weights]


def _conv_weight_blocks(weight, cell):
    """(blocks, axis) of a weight: one probe per gate (or peephole row)."""
    if weight.name == "peephole_kernel":
        return 3, 0  # rows wci, wcf, wco
    if weight.name in ("gamma", "beta"):
        return weight.shape[0] // cell.filters, -1  # one per gate block
    return cell.gate_count, -1


def _traj_gru_weight_blocks(weight, cell):
    """One probe per gate block of the fused gate weights and one per link
    of the flow generator's output, else one for all."""
    blocks = {"kernel": 3, "recurrent_kernel": 3, "bias": 3}
    blocks.update(flow_kernel=cell.links, flow_output_bias=cell.links)
    return blocks.get(weight.name, 1), -1


def _gru_reference(x, weights, **options):
    return reference.conv_gru_reference(x, *weights, padding="same", **options)


def _lstm_reference(x, weights, **options):
    outputs, h, _ = reference.conv_lstm_reference(
        x, *weights, padding="same", **options
    )
    return outputs, h


def _traj_gru_reference(x, weights, **options):
    names = TRAJ_GRU_WEIGHT_NAMES
    if len(weights) < len(names):
        names = [n for n in names if n not in TRAJ_GRU_BIASES]
    return reference_traj.traj_gru_reference(
        x, dict(zip(names, weights, strict=True)), **options
    )


def _traj_gru_hard_cases(x, states, weights):
    """The flows of the first step are fractional and some leave the
    frame (by more than 3 pixels)."""
    flows = reference_traj.flows_of(
        x[:, 0], states[0], dict(zip(TRAJ_GRU_WEIGHT_NAMES, weights))
    )
    assert np.any(flows != np.round(flows)) and np.abs(flows).max() > 3


def _memory_reference(kind):
    """The family's layer by `reference_memory`: weights in the cell's
    order (the contract's), by name; `(outputs, final h)`."""

    def reference_of(x, weights, go_backwards=False, mask=None, **_):
        names = [n for n in MEMORY_WEIGHT_BLOCKS[kind] if n != "bias"]
        if len(weights) == len(MEMORY_WEIGHT_BLOCKS[kind]):
            names = list(MEMORY_WEIGHT_BLOCKS[kind])
        by_name = dict(zip(names, weights, strict=True))
        # A lone cell's memory recurs (no zigzag partner).
        steps = [reference_memory.cell(kind, by_name)]
        outputs, states = reference_memory.stack_reference(
            steps, x, go_backwards=go_backwards, mask=mask
        )
        return outputs, states[0][0]

    return reference_of


def _memory_weight_blocks(kind):
    def weight_blocks(weight, cell):
        return MEMORY_WEIGHT_BLOCKS[kind].get(weight.name, 1), -1

    return weight_blocks


@dataclasses.dataclass(frozen=True)
class Family:
    """One recurrent family: its classes and what the tests need of it.

    name: "gru", "lstm", "traj_gru".
    layers, cells: {rank: class}.
    states: how many state tensors the cell carries.
    options: the arguments of every small test instance (on top of
        `filters` and a kernel size of 3): "same" padding, and TrajGRU's
        small flow generator (its kernels start at zero: every test sets
        its own weights, and JAX would compile a random initializer per
        weight shape).
    weights(cell, rng, scale): random weights for a built cell of the
        family in its weight order (TrajGRU: flows that vary over the
        frame, fractional, some leaving it).
    reference(x, weights, **options): the NumPy reference of the small
        layer with the cell's weights (a list in the cell's order),
        channels_last: `(outputs, final h)`; options as the reference
        function takes them (`go_backwards`, `mask`, `h0`, GRU's
        `reset_after`). None if the family has none.
    reference_atol: what the layer is checked to against `reference` in
        float32.
    smooth: whether the step is smooth in its inputs and weights (TrajGRU
        is not: bilinear sampling is piecewise linear in the flows and
        leaky_relu has a kink), so finite differences take a small step.
    weight_blocks(weight, cell): (blocks, axis): the gradient check probes
        each block of a fused weight separately.
    hard_cases(x, states, weights): asserts that inputs and weights drawn
        for the gradient check reach the family's hard cases; or None.
    config_arguments(): constructor arguments of its rank-2 cell (and
        layer), `filters` and `kernel_size` included, the others set to
        something other than their defaults, as the config states them:
        what config round trips check.
    """

    name: str
    layers: dict
    cells: dict
    states: int
    options: dict
    weights: object
    reference: object
    reference_atol: float
    smooth: bool
    weight_blocks: object
    config_arguments: object
    hard_cases: object = None

    def layer(self, filters=3, rank=2, **arguments):
        """A small layer of the family (kernel size 3)."""
        return self.layers[rank](filters, 3, **{**self.options, **arguments})

    def cell(self, filters=3, rank=2, **arguments):
        """A small cell of the family (kernel size 3)."""
        return self.cells[rank](filters, 3, **{**self.options, **arguments})

    def randomize(self, layer, rng, scale=0.4):
        """Sets `weights` on a built layer (or cell) of the family; returns
        them."""
        cell = getattr(layer, "cell", layer)
        weights = self.weights(cell, rng, scale)
        for variable, value in zip(cell.weights, weights, strict=True):
            variable.assign(value.astype(variable.dtype))
        return weights


FAMILIES = {
    "gru": Family(
        name="gru",
        layers=GRU_LAYERS,
        cells=GRU_CELLS,
        states=1,
        options={"padding": "same"},
        weights=_conv_cell_weights,
        reference=_gru_reference,
        reference_atol=1e-5,
        smooth=True,
        weight_blocks=_conv_weight_blocks,
        config_arguments=lambda: {
            "filters": 3,
            "kernel_size": (3, 1),
            "data_format": "channels_first",
            "activation": "relu",
            "reset_after": False,
            "kernel_initializer": keras.initializers.HeNormal(seed=1),
            "dropout": 0.25,
            "normalization": "layer",
        },
    ),
    "lstm": Family(
        name="lstm",
        layers=LSTM_LAYERS,
        cells=LSTM_CELLS,
        states=2,
        options={"padding": "same"},
        weights=_conv_cell_weights,
        reference=_lstm_reference,
        reference_atol=1e-5,
        smooth=True,
        weight_blocks=_conv_weight_blocks,
        config_arguments=lambda: {
            "filters": 3,
            "kernel_size": (3, 1),
            "data_format": "channels_first",
            "recurrent_activation": "hard_sigmoid",
            "unit_forget_bias": False,
            "peepholes": "channel",
            "peephole_regularizer": keras.regularizers.L1(0.01),
            "recurrent_dropout": 0.125,
        },
    ),
    "traj_gru": Family(
        name="traj_gru",
        layers=TRAJ_GRU_LAYERS,
        cells=TRAJ_GRU_CELLS,
        states=1,
        options={
            "links": 3,
            "flow_filters": 4,
            "flow_kernel_size": 3,
            "kernel_initializer": "zeros",
            "recurrent_initializer": "zeros",
        },
        weights=_traj_gru_cell_weights,
        reference=_traj_gru_reference,
        reference_atol=1e-4,
        smooth=False,
        weight_blocks=_traj_gru_weight_blocks,
        config_arguments=lambda: {
            "filters": 3,
            "kernel_size": (3, 1),
            "links": 2,
            "flow_filters": 6,
            "flow_kernel_size": (3, 3),
            "flow_activation": "relu",
            "flow_kernel_initializer": keras.initializers.GlorotUniform(3),
            "flow_kernel_regularizer": keras.regularizers.L2(0.01),
            "dropout": 0.1,
            "data_format": "channels_first",
        },
        hard_cases=_traj_gru_hard_cases,
    ),
    # No two memory families follow each other here: the portability
    # test stacks each family's cell with the next one's and composes
    # their references, which a shared zigzag memory would not.
    "st_lstm": Family(
        name="st_lstm",
        layers={2: kc.SpatioTemporalLSTM2D},
        cells={2: kc.SpatioTemporalLSTM2DCell},
        states=3,
        options={},
        weights=_conv_cell_weights,
        reference=_memory_reference("st_lstm"),
        reference_atol=1e-5,
        smooth=True,
        weight_blocks=_memory_weight_blocks("st_lstm"),
        config_arguments=lambda: {
            "filters": 3,
            "kernel_size": (3, 1),
            "data_format": "channels_first",
            "recurrent_activation": "hard_sigmoid",
            "unit_forget_bias": False,
            "decoupling_weight": 0.25,
            "recurrent_regularizer": keras.regularizers.L2(0.01),
            "dropout": 0.125,
        },
    ),
    "sa_conv_lstm": Family(
        name="sa_conv_lstm",
        layers={2: kc.SAConvLSTM2D},
        cells={2: kc.SAConvLSTM2DCell},
        states=3,
        options={"attention_filters": 2},
        weights=_conv_cell_weights,
        reference=_memory_reference("sa_conv_lstm"),
        reference_atol=1e-5,
        smooth=True,
        weight_blocks=_memory_weight_blocks("sa_conv_lstm"),
        config_arguments=lambda: {
            "filters": 5,
            "kernel_size": (3, 1),
            "attention_filters": 3,
            "activation": "relu",
            "use_bias": False,
            "bias_constraint": keras.constraints.NonNeg(),
            "recurrent_dropout": 0.25,
        },
    ),
    "causal_lstm": Family(
        name="causal_lstm",
        layers={2: kc.CausalLSTM2D},
        cells={2: kc.CausalLSTM2DCell},
        states=3,
        options={},
        weights=_conv_cell_weights,
        reference=_memory_reference("causal_lstm"),
        reference_atol=1e-5,
        smooth=True,
        weight_blocks=_memory_weight_blocks("causal_lstm"),
        config_arguments=lambda: {
            "filters": 3,
            "kernel_size": (5, 5),
            "data_format": "channels_first",
            "unit_forget_bias": False,
            "kernel_initializer": keras.initializers.HeNormal(seed=2),
            "seed": 7,
        },
    ),
}


def family_of(cell):
    """The `Family` whose cell classes include `cell`'s class."""
    for family in FAMILIES.values():
        if isinstance(cell, tuple(family.cells.values())):
            return family
    raise KeyError(f"no family of {type(cell).__name__} in FAMILIES")


# --------------------------------------------------------------------------
# Closeness
# --------------------------------------------------------------------------


def to_numpy(x):
    """A NumPy array; half-precision floats widened to float32."""
    array = np.asarray(ops.convert_to_numpy(x))
    if array.dtype.kind in "fV" and array.dtype.itemsize < 4:
        array = array.astype("float32")
    return array


def assert_close(
    actual, expected, atol=1e-5, rtol=1e-7, relative=False, err_msg=""
):
    """Every tensor of the nest `actual` is close to its peer in `expected`
    (the same structure, flattened): `|a - e| <= atol + rtol * |e|`; with
    `relative`, `atol` is scaled by the largest `|e|` of the tensor (when
    above 1)."""
    actual, expected = keras.tree.flatten(actual), keras.tree.flatten(expected)
    assert len(actual) == len(expected), err_msg
    for a, e in zip(actual, expected):
        a, e = to_numpy(a), to_numpy(e)
        scale = max(1.0, float(np.max(np.abs(e)))) if relative else 1.0
        np.testing.assert_allclose(
            a, e, rtol=rtol, atol=atol * scale, err_msg=err_msg
        )


# --------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------

# code: the exit code, None if the process was stopped unfinished;
# output: its stdout, and its stderr unless kept apart in `errors`.
Result = collections.namedtuple("Result", "code output errors")


class Job:
    """One process: a command, with extra environment, in a folder.

    `env` is added to this process's environment. `separate_stderr` keeps
    stderr out of `output` (in `errors`).
    """

    def __init__(
        self, label, command, env=None, cwd=None, separate_stderr=False
    ):
        self.label = label
        self.command = [str(part) for part in command]
        self.env = dict(env or {})
        self.cwd = cwd
        self.separate_stderr = separate_stderr

    @classmethod
    def call(cls, label, module, function, args=(), env=None):
        """`module.function(*args)` of a module in tests/ (JSON arguments),
        with tests/ and the repository on the path, from tests/, and
        TensorFlow's log quiet unless `env` says otherwise."""
        code = (
            "import json, sys\n"
            f"import {module} as module\n"
            f"module.{function}(*json.loads(sys.argv[1]))\n"
        )
        path = [TESTS_DIR, REPO_DIR]
        if os.environ.get("PYTHONPATH"):
            path.append(os.environ["PYTHONPATH"])
        full_env = {
            "PYTHONPATH": os.pathsep.join(path),
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"),
            **(env or {}),
        }
        command = [sys.executable, "-c", code, json.dumps(list(args))]
        return cls(label, command, full_env, cwd=TESTS_DIR)

    def environment(self):
        return {**os.environ, **self.env}


def python(*arguments):
    """A command running this Python (the test session's interpreter)."""
    return [sys.executable, *arguments]


def free_ports(count):
    """Ports on 127.0.0.1 that were free a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _kill(process):
    """Kill the process group of a process we started (its own session)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()


def run_parallel(jobs, timeout, stop_on_failure=True):
    """Run the jobs at once; return {label: Result}.

    All jobs share one deadline of `timeout` seconds; a job still running
    then is killed and reported with exit code None. With
    `stop_on_failure`, the first job to fail stops the others. Every
    process group started here is killed before returning or raising.
    """
    started = []
    logs = []
    try:
        for job in jobs:
            out = tempfile.TemporaryFile(mode="w+")
            logs.append(out)
            err = subprocess.STDOUT
            if job.separate_stderr:
                err = tempfile.TemporaryFile(mode="w+")
                logs.append(err)
            process = subprocess.Popen(
                job.command,
                env=job.environment(),
                cwd=job.cwd,
                stdout=out,
                stderr=err,
                text=True,
                start_new_session=True,
            )
            started.append((job, process, out, err))
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for _, p, _, _ in started):
            if time.monotonic() > deadline:
                break
            if stop_on_failure and any(
                p.poll() not in (None, 0) for _, p, _, _ in started
            ):
                break
            time.sleep(0.2)
        results = {}
        for job, process, out, err in started:
            unfinished = process.poll() is None
            _kill(process)
            out.seek(0)
            errors = ""
            if job.separate_stderr:
                err.seek(0)
                errors = err.read()
            code = None if unfinished else process.returncode
            results[job.label] = Result(code, out.read(), errors)
        return results
    finally:
        for _, process, _, _ in started:
            _kill(process)
        for log in logs:
            log.close()


def run(job, timeout):
    """Run one job; its Result (exit code None if it ran out of time)."""
    return run_parallel([job], timeout)[job.label]


def assert_succeeded(results, labels=None):
    """Every job (or the named ones) exited with 0; else show their output."""
    failures = []
    for label in labels or results:
        code, output, errors = results[label]
        if code != 0:
            why = "stopped unfinished" if code is None else f"exit code {code}"
            failures.append(f"--- {label}: {why}\n{(output + errors)[-4000:]}")
    if failures:
        raise AssertionError("\n".join(failures))


# --------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------


def backend_functions(loss, arrays):
    """(value(arrays) -> float, gradients(arrays) -> arrays), compiled
    where the backend compiles, with the backend's own autodiff."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(loss)

        def value(arrays):
            return float(compiled(*[tf.constant(a) for a in arrays]))

        def gradients(arrays):
            tensors = [tf.constant(a) for a in arrays]
            with tf.GradientTape() as tape:
                tape.watch(tensors)
                result = loss(*tensors)
            return tape.gradient(result, tensors)

    elif backend == "jax":
        import jax

        # One compilation per case: the value comes with its gradient.
        value_and_grad = jax.jit(
            jax.value_and_grad(loss, argnums=tuple(range(len(arrays))))
        )

        def value(arrays):
            return float(value_and_grad(*arrays)[0])

        def gradients(arrays):
            return value_and_grad(*arrays)[1]

    elif backend == "torch":
        import torch

        def value(arrays):
            with torch.no_grad():
                return float(loss(*[torch.tensor(a) for a in arrays]))

        def gradients(arrays):
            tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
            return torch.autograd.grad(loss(*tensors), tensors)

    else:
        raise AssertionError(f"no autodiff written for backend {backend}")
    return value, lambda arrays: [
        ops.convert_to_numpy(g) for g in gradients(arrays)
    ]


def probe_directions(shape, gates, rng, axis=-1):
    """Random directions: over the whole tensor, or (fused weights) one per
    gate block of `axis`, so every gate of every weight is probed."""
    if gates == 1:
        return [rng.normal(size=shape)]
    axis = axis % len(shape)
    width = shape[axis] // gates
    directions = []
    for gate in range(gates):
        v = np.zeros(shape)
        block = (slice(None),) * axis + (
            slice(gate * width, (gate + 1) * width),
        )
        v[block] = rng.normal(size=v[block].shape)
        directions.append(v)
    return directions
