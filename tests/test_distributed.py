"""Data-parallel training on an existing engine matches one device.

Three setups train the same ConvGRU2D model (same seeded initial weights,
same data, global batch 4, plain SGD, 3 steps) and must give the per-step
losses and the final weights of `model.fit` on one device:

* TensorFlow `MirroredStrategy` over two logical CPU devices, `model.fit`;
* TensorFlow `MultiWorkerMirroredStrategy` with two worker processes on
  127.0.0.1 (free ports, `TF_CONFIG`), one CPU replica each, trained with
  TensorFlow's custom-loop recipe (Keras 3's `fit` fails under this
  strategy, Keras issue #20585);
* JAX `keras.distribution.DataParallel` over two host devices
  (`XLA_FLAGS=--xla_force_host_platform_device_count=2`), `model.fit`.

The forecasting models (`kc.models.EncoderForecaster`, and
`kc.models.NextFrameForecaster` with its scheduled sampling) train on
MirroredStrategy and on JAX's DataParallel to one device's weights too, and
the sampling counter advances once per step on every replica (the last
section below).

Each runs in subprocesses, all at once, bounded: every worker stops itself
(SIGALRM), collectives time out, and the test kills every process group it
started. They run once per CI run, in the TensorFlow session (the
`tensorflow_session` marker in conftest.py).
"""

import importlib.metadata
import json
import signal

import keras
import numpy as np
import pytest
from helpers import Job
from helpers import assert_succeeded
from helpers import free_ports
from helpers import random_weights
from helpers import run_parallel

pytestmark = pytest.mark.tensorflow_session

GLOBAL_BATCH = 4
STEPS = 3
FRAMES = (3, 6, 6, 1)  # time, height, width, channels
FILTERS = 2
LEARNING_RATE = 0.1
SUBPROCESS_TIMEOUT = 240
RTOL = 1e-5
ATOL = 1e-6


# --- what the subprocesses run ----------------------------------------------


def data():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(GLOBAL_BATCH * STEPS, *FRAMES))
    y = rng.uniform(-0.5, 0.5, size=(GLOBAL_BATCH * STEPS, 6, 6, FILTERS))
    return x.astype("float32"), y.astype("float32")


def build_model():
    import keras

    import keras_convgru as kc

    model = keras.Sequential(
        [keras.Input(FRAMES), kc.ConvGRU2D(FILTERS, 3, padding="same")]
    )
    rng = np.random.default_rng(1)
    model.set_weights(
        [
            rng.normal(scale=0.4, size=w.shape).astype("float32")
            for w in model.weights
        ]
    )
    model.compile(keras.optimizers.SGD(LEARNING_RATE), "mse")
    return model


def train(model, x, y):
    """`fit` for one epoch of STEPS batches; returns the per-step losses.

    Keras logs the running mean of the epoch's losses after each batch
    (weighted by batch size, equal here), so step k's loss is
    k * mean_k - (k - 1) * mean_(k-1).
    """
    import keras

    means = []

    class RunningMeans(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            means.append(float(logs["loss"]))

    model.fit(
        x,
        y,
        batch_size=GLOBAL_BATCH,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[RunningMeans()],
    )
    assert len(means) == STEPS, means
    return [
        (k + 1) * m - k * (means[k - 1] if k else 0.0)
        for k, m in enumerate(means)
    ]


def write_result(path, single, distributed, replicas):
    """Both runs' per-step losses and final weights, and the replica count."""
    (single_losses, single_weights), (losses, weights) = single, distributed
    arrays = {f"single_weight_{i}": w for i, w in enumerate(single_weights)}
    arrays.update({f"weight_{i}": w for i, w in enumerate(weights)})
    np.savez(
        path,
        single_losses=single_losses,
        losses=losses,
        replicas=replicas,
        **arrays,
    )


def stop_after(seconds):
    """Self-stopping: SIGALRM ends this process if it hangs."""
    signal.alarm(int(seconds))


def mirrored_worker(path, timeout):
    stop_after(timeout)
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    x, y = data()
    single = build_model()
    single_run = (train(single, x, y), single.get_weights())

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = build_model()
    variable = model.trainable_variables[0].value
    assert len(strategy.experimental_local_results(variable)) == 2
    distributed_run = (train(model, x, y), model.get_weights())
    write_result(
        path, single_run, distributed_run, strategy.num_replicas_in_sync
    )


def custom_loop_train(strategy, model, x, y):
    """Keras 3's `fit` fails under MultiWorkerMirroredStrategy (Keras
    issue #20585): train with the TensorFlow custom-loop recipe instead.
    Returns the per-step losses of the global batch, before each update."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    dataset = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .batch(GLOBAL_BATCH)
        .with_options(options)
    )
    optimizer = model.optimizer

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            prediction = model(x, training=True)
            per_sample = tf.reduce_mean(tf.square(prediction - y), [1, 2, 3])
            loss = tf.nn.compute_average_loss(
                per_sample, global_batch_size=GLOBAL_BATCH
            )
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    @tf.function
    def step(batch):
        losses = strategy.run(replica_step, args=batch)
        return strategy.reduce("SUM", losses, axis=None)

    losses = [
        float(step(batch))
        for batch in strategy.experimental_distribute_dataset(dataset)
    ]
    assert len(losses) == STEPS, losses
    return losses


def multi_worker(path, timeout):
    """One of two workers; TF_CONFIG (set by the test) says which."""
    stop_after(timeout)
    import tensorflow as tf

    options = tf.distribute.experimental.CommunicationOptions(
        timeout_seconds=timeout // 2
    )
    strategy = tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=options
    )
    x, y = data()
    single = build_model()
    single_run = (train(single, x, y), single.get_weights())
    with strategy.scope():
        model = build_model()
    distributed_run = (
        custom_loop_train(strategy, model, x, y),
        model.get_weights(),
    )
    write_result(
        path, single_run, distributed_run, strategy.num_replicas_in_sync
    )


def jax_data_parallel_worker(path, timeout):
    stop_after(timeout)
    import jax
    import keras

    assert len(jax.devices("cpu")) == 2, jax.devices()
    x, y = data()
    single = build_model()
    single_run = (train(single, x, y), single.get_weights())

    devices = keras.distribution.list_devices("cpu")
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=devices)
    )
    model = build_model()
    variable = model.trainable_variables[0].value
    assert len(variable.sharding.device_set) == 2
    distributed_run = (train(model, x, y), model.get_weights())
    write_result(path, single_run, distributed_run, len(devices))


# --- the tests --------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Start every setup's subprocesses at once; {name: (results, paths)}."""
    directory = tmp_path_factory.mktemp("distributed")
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    tf = {"KERAS_BACKEND": "tensorflow"}
    paths = {
        "mirrored": [str(directory / "mirrored.npz")],
        "multi-worker": [str(directory / f"worker-{i}.npz") for i in (0, 1)],
        "jax": [str(directory / "jax.npz")],
    }
    jobs = {
        "mirrored": [
            Job.call(
                "mirrored",
                "test_distributed",
                "mirrored_worker",
                [paths["mirrored"][0], SUBPROCESS_TIMEOUT],
                tf,
            )
        ],
        "multi-worker": [
            Job.call(
                f"worker {i}",
                "test_distributed",
                "multi_worker",
                [paths["multi-worker"][i], SUBPROCESS_TIMEOUT],
                {
                    **tf,
                    "TF_CONFIG": json.dumps(
                        {
                            "cluster": cluster,
                            "task": {"type": "worker", "index": i},
                        }
                    ),
                },
            )
            for i in (0, 1)
        ],
        "jax": [
            Job.call(
                "jax",
                "test_distributed",
                "jax_data_parallel_worker",
                [paths["jax"][0], SUBPROCESS_TIMEOUT],
                {
                    "KERAS_BACKEND": "jax",
                    "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
                    "JAX_PLATFORMS": "cpu",
                },
            )
        ],
    }
    results = run_parallel(
        [job for group in jobs.values() for job in group],
        SUBPROCESS_TIMEOUT + 30,
        stop_on_failure=False,
    )
    return {
        name: ({j.label: results[j.label] for j in group}, paths[name])
        for name, group in jobs.items()
    }


def read(path):
    with np.load(path) as result:
        weights = sorted(k for k in result.files if k.startswith("weight_"))
        return {
            "replicas": int(result["replicas"]),
            "single_losses": result["single_losses"],
            "losses": result["losses"],
            "single_weights": [result["single_" + k] for k in weights],
            "weights": [result[k] for k in weights],
        }


def assert_matches_one_device(run):
    """Per-step losses and final weights equal the one-device run's."""
    np.testing.assert_allclose(run["losses"], run["single_losses"], rtol=RTOL)
    assert len(run["weights"]) == len(run["single_weights"]) == 3
    for actual, expected in zip(run["weights"], run["single_weights"]):
        np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL)
    # Training moved the weights: the comparison is not of initial values.
    initial = build_initial_weights()
    assert any(
        np.abs(w - w0).max() > 1e-3 for w, w0 in zip(run["weights"], initial)
    )


def build_initial_weights():
    rng = np.random.default_rng(1)
    shapes = [(3, 3, 1, 3 * FILTERS), (3, 3, FILTERS, 3 * FILTERS)]
    shapes.append((2, 3 * FILTERS))
    return random_weights(shapes, rng, scale=0.4)


# Keras 3.8 and 3.9 (and so our oldest-versions run) train a model under
# MirroredStrategy to other losses than on one device from the second step
# on, for Keras's own Dense and ConvLSTM2D as for ours; fixed by Keras
# 3.10. Strict: the test fails if it passes there, so a fix is noticed.
KERAS_MIRRORED_BUG = tuple(int(p) for p in keras.version().split(".")[:2]) < (
    3,
    10,
)


@pytest.mark.xfail(
    KERAS_MIRRORED_BUG,
    reason="Keras < 3.10: MirroredStrategy losses differ from one device, "
    "for keras.layers.Dense too",
    strict=True,
)
def test_tensorflow_mirrored_strategy_on_two_cpus_matches_one_device(runs):
    results, (path,) = runs["mirrored"]
    assert_succeeded(results)
    run = read(path)
    assert run["replicas"] == 2
    assert_matches_one_device(run)


def test_tensorflow_multi_worker_strategy_on_loopback_matches_one_device(runs):
    results, paths = runs["multi-worker"]
    assert_succeeded(results)
    chief, other = (read(p) for p in paths)
    assert chief["replicas"] == other["replicas"] == 2
    assert_matches_one_device(chief)
    assert_matches_one_device(other)
    for a, b in zip(chief["weights"], other["weights"]):
        np.testing.assert_array_equal(a, b)


def test_jax_data_parallel_on_two_host_devices_matches_one_device(runs):
    results, (path,) = runs["jax"]
    assert_succeeded(results)
    run = read(path)
    assert run["replicas"] == 2
    assert_matches_one_device(run)


# --- the forecasting models -------------------------------------------------
#
# `kc.models.EncoderForecaster` and `kc.models.NextFrameForecaster` (with
# scheduled sampling) trained by `model.fit` for MODEL_STEPS steps of the
# global batch on one device, then data parallel on two: MirroredStrategy
# over two logical CPU devices, and JAX's DataParallel over two host
# devices. One process per engine trains its cases in turn (about 15 s for
# TensorFlow's and 25 s for JAX's on one free core: JAX compiles each
# model's step twice, for one device and for two).

MODEL_STEPS = 2
FRAME = (8, 8, 1)  # rows, cols, channels
OBSERVED, FORECAST = 3, 3
# The sampling schedule of each NextFrameForecaster case and the value of
# `sampling_iteration` it starts from ("encoder_forecaster" has neither):
# - "teacher_forcing", "free_running": ε 1 or 0, the draws decide nothing;
# - "linear_one_step": LinearSampling(1), ε 1 at iteration 0 and 0 from 1
#   on: its second step is free running only if every replica reads the
#   counter that the first step advanced, once;
# - "reverse_past_stop": ReverseSampling past `stop`, ε 0 and ε_r 1, the
#   free-running path, read from a counter the test set;
# - "coin": ε 0.5, the draws decide.
MODEL_CASES = {
    "encoder_forecaster": None,
    "teacher_forcing": (("ConstantSampling", 1.0), 0),
    "free_running": (("ConstantSampling", 0.0), 0),
    "linear_one_step": (("LinearSampling", 1), 0),
    "reverse_past_stop": (("ReverseSampling", 1, 2), 5),
    "coin": (("ConstantSampling", 0.5), 0),
}
# JAX's compilations cost most of its worker's time: the cases whose
# schedule is decided (linear_one_step, reverse_past_stop) run on
# TensorFlow only, where each replica reads its own copy of the counter; on
# JAX the counter is one replicated array, and "coin" already shows that
# the whole sampling path (ε, counter, draws) gives one device's result.
ENGINE_CASES = {
    "mirrored": list(MODEL_CASES),
    "jax": ["encoder_forecaster", "teacher_forcing", "free_running", "coin"],
}


def model_data(case):
    """(inputs, targets) of MODEL_STEPS global batches."""
    rng = np.random.default_rng(2)
    count = GLOBAL_BATCH * MODEL_STEPS
    if case == "encoder_forecaster":
        x = rng.uniform(0, 1, size=(count, OBSERVED, *FRAME))
        y = rng.uniform(0, 1, size=(count, FORECAST, *FRAME))
        return x.astype("float32"), y.astype("float32")
    sequences = rng.uniform(0, 1, size=(count, OBSERVED + FORECAST, *FRAME))
    sequences = sequences.astype("float32")
    return sequences, sequences[:, 1:]


def build_forecaster(case):
    """The case's model, built, with seeded weights, compiled."""
    import keras

    import keras_convgru as kc

    if case == "encoder_forecaster":
        model = kc.models.EncoderForecaster(
            "ConvGRU2DCell", filters=[2], strides=2, output_steps=FORECAST
        )
        model.build((None, OBSERVED, *FRAME))
    else:
        (schedule, *arguments), start = MODEL_CASES[case]
        model = kc.models.NextFrameForecaster(
            [kc.SpatioTemporalLSTM2DCell(2, 3)],
            input_steps=OBSERVED,
            output_steps=FORECAST,
            patch_size=2,
            sampling=getattr(kc.models, schedule)(*arguments),
            seed=4,
        )
        model.build((None, OBSERVED + FORECAST, *FRAME))
        model.sampling_iteration.assign(float(start))
    rng = np.random.default_rng(1)
    for weight in model.trainable_weights:
        weight.assign(
            rng.normal(scale=0.3, size=weight.shape).astype("float32")
        )
    model.compile(keras.optimizers.SGD(LEARNING_RATE), "mse")
    return model


def fit_forecaster(model, case):
    x, y = model_data(case)
    model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)


def trainable(model):
    return [np.array(w.numpy()) for w in model.trainable_weights]


def forecaster_runs(cases, distributed, local_counters):
    """Every case on one device, then inside `distributed()`; the arrays
    to save and the last case's models (one device, distributed).
    `local_counters(model)`: `sampling_iteration` as each replica holds
    it."""
    arrays = {}
    for case in cases:
        single = build_forecaster(case)
        for i, w in enumerate(trainable(single)):
            arrays[f"{case}__initial_{i}"] = w
        fit_forecaster(single, case)
        with distributed():
            model = build_forecaster(case)
            fit_forecaster(model, case)
        pairs = zip(trainable(single), trainable(model))
        for i, (one_device, data_parallel) in enumerate(pairs):
            arrays[f"{case}__single_{i}"] = one_device
            arrays[f"{case}__weight_{i}"] = data_parallel
        if case != "encoder_forecaster":
            arrays[f"{case}__single_counters"] = np.array(
                [float(single.sampling_iteration.numpy())]
            )
            arrays[f"{case}__counters"] = np.array(local_counters(model))
    return arrays, (single, model)


def mirrored_forecaster_worker(path, timeout):
    stop_after(timeout)
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

    def local_counters(model):
        variable = model.sampling_iteration.value
        local = strategy.experimental_local_results(variable)
        return [float(v.numpy()) for v in local]

    arrays, (single, coin) = forecaster_runs(
        ENGINE_CASES["mirrored"], strategy.scope, local_counters
    )
    # The sampling choices of each replica: a global batch of one sequence
    # repeated, through the "coin" model in training, each replica's half;
    # and through the one-device "coin" model (its weights and its seed
    # generator's state those of the replicas, both after MODEL_STEPS
    # steps), the whole batch.
    sequence = model_data("coin")[0][:1]
    batch = np.repeat(sequence, 2 * GLOBAL_BATCH, axis=0)
    dataset = tf.data.Dataset.from_tensor_slices(batch).batch(len(batch))
    (x,) = list(strategy.experimental_distribute_dataset(dataset))

    @tf.function
    def forward(x):
        return strategy.run(lambda x: coin(x, training=True), args=(x,))

    for i, output in enumerate(strategy.experimental_local_results(forward(x))):
        arrays[f"replica_{i}_outputs"] = output.numpy()
    arrays["single_outputs"] = np.array(single(batch, training=True))
    np.savez(path, replicas=strategy.num_replicas_in_sync, **arrays)


def jax_forecaster_worker(path, timeout):
    stop_after(timeout)
    import contextlib

    import jax
    import keras

    assert len(jax.devices("cpu")) == 2, jax.devices()
    devices = keras.distribution.list_devices("cpu")

    @contextlib.contextmanager
    def data_parallel():
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=devices)
        )
        try:
            yield
        finally:
            keras.distribution.set_distribution(None)

    def local_counters(model):
        variable = model.sampling_iteration.value
        assert len(variable.sharding.device_set) == 2
        return [float(variable)]

    arrays, _ = forecaster_runs(
        ENGINE_CASES["jax"], data_parallel, local_counters
    )
    np.savez(path, replicas=len(devices), **arrays)


@pytest.fixture(scope="module")
def forecaster_runs_of(tmp_path_factory):
    """Both engines' processes at once; {engine: (results, path)}."""
    directory = tmp_path_factory.mktemp("forecasters")
    engines = {
        "mirrored": (
            "mirrored_forecaster_worker",
            {"KERAS_BACKEND": "tensorflow"},
        ),
        "jax": (
            "jax_forecaster_worker",
            {
                "KERAS_BACKEND": "jax",
                "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
                "JAX_PLATFORMS": "cpu",
            },
        ),
    }
    paths = {name: str(directory / f"{name}.npz") for name in engines}
    jobs = [
        Job.call(
            f"{name} forecasters",
            "test_distributed",
            function,
            [paths[name], SUBPROCESS_TIMEOUT],
            env,
        )
        for name, (function, env) in engines.items()
    ]
    results = run_parallel(jobs, SUBPROCESS_TIMEOUT + 30, stop_on_failure=False)
    return {
        name: ({job.label: results[job.label]}, paths[name])
        for name, job in zip(engines, jobs)
    }


def read_case(path, case):
    """One case's weights (one device, data parallel, initial) and
    counters (one device; each replica's) from a worker's file."""
    with np.load(path) as result:

        def weights(kind):
            prefix = f"{case}__{kind}_"
            count = sum(
                name[len(prefix) :].isdigit() and name.startswith(prefix)
                for name in result.files
            )
            return [result[f"{prefix}{i}"] for i in range(count)]

        run = {
            "replicas": int(result["replicas"]),
            "single_weights": weights("single"),
            "weights": weights("weight"),
            "initial": weights("initial"),
        }
        for key in ("single_counters", "counters"):
            name = f"{case}__{key}"
            if name in result.files:
                run[key] = [float(v) for v in result[name]]
        return run


def assert_weights_match_one_device(run):
    """The data-parallel step's weights are the one-device step's, up to
    float32 rounding: the replicas' gradients are summed over their half
    batches and then across replicas, one device sums the whole batch in
    another order (differences of a few 1e-8 seen, 1e-6 on the
    encoder-forecaster's larger weights); RTOL and ATOL leave them room
    and are far below the steps' own changes, checked here to be above
    1e-3."""
    assert run["replicas"] == 2
    assert len(run["weights"]) == len(run["single_weights"]) > 0
    for actual, expected in zip(run["weights"], run["single_weights"]):
        np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL)
    assert max_difference(run["weights"], run["initial"]) > 1e-3


def max_difference(weights, others):
    return max(float(np.abs(a - b).max()) for a, b in zip(weights, others))


# The cases whose draws decide nothing, each engine.
DECIDED = [
    (engine, case)
    for engine, cases in ENGINE_CASES.items()
    for case in cases
    if case != "coin"
]


@pytest.mark.parametrize(("engine", "case"), DECIDED)
def test_forecaster_trains_data_parallel_as_on_one_device(
    forecaster_runs_of, engine, case
):
    results, path = forecaster_runs_of[engine]
    assert_succeeded(results)
    run = read_case(path, case)
    assert_weights_match_one_device(run)
    if case == "encoder_forecaster":
        return
    # One step, one count, on every replica: not one per replica.
    _, start = MODEL_CASES[case]
    expected = float(start + MODEL_STEPS)
    assert run["single_counters"] == [expected]
    assert run["counters"] == [expected] * len(run["counters"])


def test_the_schedule_cases_are_told_apart_by_the_counter(forecaster_runs_of):
    # linear_one_step teacher-forces its first step and runs free in its
    # second: its weights are neither those of teacher forcing nor those
    # of free running, by far more than the tolerance, so a replica that
    # read a stale or a doubled counter would fail the comparison above.
    results, path = forecaster_runs_of["mirrored"]
    assert_succeeded(results)
    linear = read_case(path, "linear_one_step")["single_weights"]
    for other in ("teacher_forcing", "free_running"):
        weights = read_case(path, other)["single_weights"]
        assert max_difference(linear, weights) > 1e-4, other
    # Past `stop`, ReverseSampling is free running.
    reverse = read_case(path, "reverse_past_stop")
    free = read_case(path, "free_running")
    for a, b in zip(reverse["single_weights"], free["single_weights"]):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("engine", list(ENGINE_CASES))
def test_sampling_counts_each_step_once_on_every_replica(
    forecaster_runs_of, engine
):
    results, path = forecaster_runs_of[engine]
    assert_succeeded(results)
    run = read_case(path, "coin")
    assert run["replicas"] == 2
    assert run["single_counters"] == [float(MODEL_STEPS)]
    assert run["counters"] == [float(MODEL_STEPS)] * len(run["counters"])
    assert all(np.isfinite(w).all() for w in run["weights"])
    assert max_difference(run["weights"], run["initial"]) > 1e-3


# JAX 0.4.38 (the oldest-versions run, with Keras 3.8) is not reliable
# here: its DataParallel runs drew, in some processes, other choices than
# one device (weights apart by 1e-4, the size of a changed choice, while
# the cases without chance matched to 1e-8 in the same process), and in
# others the same; seen with JAX_THREEFRY_PARTITIONABLE unset (its default
# is 0) and not with it set to 0. JAX 0.10 matched in every run. Not
# strict, as it passes in some runs.
OLD_JAX = tuple(
    int(p) for p in importlib.metadata.version("jax").split(".")[:2]
) < (0, 5)


@pytest.mark.xfail(
    OLD_JAX,
    reason="JAX < 0.5: DataParallel's random draws differ from one "
    "device's in some runs",
    strict=False,
)
def test_jax_data_parallel_draws_the_samples_choices_as_one_device(
    forecaster_runs_of,
):
    # DataParallel shards one global batch through one program: the
    # per-sample draws are one device's, so are the weights.
    results, path = forecaster_runs_of["jax"]
    assert_succeeded(results)
    assert_weights_match_one_device(read_case(path, "coin"))


def test_mirrored_replicas_draw_their_own_sampling_choices(
    forecaster_runs_of,
):
    # Every MirroredStrategy replica holds a copy of the seed generator's
    # state; each draws the choices of the global batch, as one device
    # does, and keeps its share's.
    results, path = forecaster_runs_of["mirrored"]
    assert_succeeded(results)
    with np.load(path) as result:
        first, second = result["replica_0_outputs"], result["replica_1_outputs"]
        single = result["single_outputs"]
    # The same sequence everywhere: within a replica the samples differ
    # (per-sample draws) ...
    forecast = first[:, OBSERVED:].reshape(len(first), -1)
    assert np.abs(forecast - forecast[:1]).max() > 1e-3
    # ... and across replicas they must too ...
    assert np.abs(first - second).max() > 1e-3
    # ... as one device draws them for the whole batch: sample k of the
    # global batch gets the same choices on one device and on its replica
    # (a changed choice moves an output by about 1e-1).
    assert len(first) + len(second) == len(single)
    np.testing.assert_allclose(
        np.concatenate([first, second]), single, rtol=RTOL, atol=ATOL
    )
    # So training leaves the choices to chance and still ends with one
    # device's weights.
    assert_weights_match_one_device(read_case(path, "coin"))
