"""Shared fixtures for the keras_convgru tests.

Also two settings of the suite as a whole:

* Hypothesis profiles. "fast" (loaded by default) keeps the property tests
  to a few dozen derandomized examples so CI is quick and reproducible;
  "thorough" (`pytest --hypothesis-profile=thorough`) tries hundreds of
  random inputs.
* The `tensorflow_session` marker, for tests that run once per CI run:
  the cross-backend `.keras` matrix and the distribution tests start
  their own subprocesses, one per backend or engine they exercise, and
  the SavedModel export test uses TensorFlow itself. CI runs the suite
  once per backend; running these in all three sessions would triple
  their cost (they are most of the suite's subprocess time) without
  testing anything more, so they are collected in the TensorFlow session
  only (TensorFlow is the default and reference backend) and deselected,
  not skipped, in the others. `KC_TENSORFLOW_SESSION_TESTS=1` collects
  them in any session.
* The `jax_session` marker, for the few tests that need Keras's JAX
  backend in their own process (the Flax peer's weight check builds a
  `kc.ConvLSTM2D` there): collected in the JAX session, deselected in
  the others.

And one check of the session itself: TensorFlow's CPU path. On x86 CPUs
with AVX-512 (VNNI, BF16, AMX) TensorFlow turns on its oneDNN path by
default; `TF_ENABLE_ONEDNN_OPTS=0|1` picks it, and the convolutions then
run different kernels (`_MklNativeConv2D` instead of `Conv2D` in a
profile) with different rounding. CI runs the TensorFlow suite on both
paths; `make` sets `KC_EXPECT_ONEDNN=1|0` beside `TF_ENABLE_ONEDNN_OPTS`,
and when it is set the session stops before collecting anything unless
TensorFlow reports that path as the active one. The probe is TensorFlow's
own runtime check, `IsMklEnabled()` from
`tensorflow.python.util._pywrap_util_port` (what TensorFlow's test
utilities use to pick oneDNN expectations): it reads
`TF_ENABLE_ONEDNN_OPTS` and the CPU the way TensorFlow's kernels do, and
on an AVX-512 machine it is True unset, True with `=1` and False with
`=0` (checked on TensorFlow 2.18.1 and 2.21.0).
"""

import contextlib
import os

import hypothesis
import keras
import numpy as np
import pytest

hypothesis.settings.register_profile(
    "fast",
    max_examples=10,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
)
hypothesis.settings.register_profile(
    "thorough",
    max_examples=200,
    deadline=None,
    print_blob=True,
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
)
# `--hypothesis-profile=NAME` (hypothesis's pytest plugin) loads its profile
# after this file is imported, so it overrides this default.
hypothesis.settings.load_profile("fast")

ONCE = "tensorflow_session"
JAX_ONLY = "jax_session"


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        f"{ONCE}: runs once per CI run, in the TensorFlow-backend session "
        "(its own subprocesses cover the other backends); "
        "KC_TENSORFLOW_SESSION_TESTS=1 collects it in every session",
    )
    config.addinivalue_line(
        "markers",
        f"{JAX_ONLY}: needs Keras's JAX backend in this process; collected "
        "in the JAX session only",
    )
    _check_tensorflow_cpu_path()


EXPECT_ONEDNN = "KC_EXPECT_ONEDNN"


def tensorflow_onednn_enabled():
    """Whether TensorFlow runs its oneDNN CPU path in this process."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def _check_tensorflow_cpu_path():
    expected = os.environ.get(EXPECT_ONEDNN)
    if expected is None:
        return
    if expected not in ("0", "1"):
        raise pytest.UsageError(
            f"{EXPECT_ONEDNN} must be 0 or 1, got {expected!r}"
        )
    active = tensorflow_onednn_enabled()
    if active != (expected == "1"):
        raise pytest.UsageError(
            f"{EXPECT_ONEDNN}={expected} but TensorFlow's oneDNN CPU path "
            f"is {'on' if active else 'off'} (TF_ENABLE_ONEDNN_OPTS="
            f"{os.environ.get('TF_ENABLE_ONEDNN_OPTS', '<unset>')!s}); "
            "this session would test the other path"
        )


def _collects_tensorflow_session_tests():
    return (
        keras.backend.backend() == "tensorflow"
        or os.environ.get("KC_TENSORFLOW_SESSION_TESTS") == "1"
    )


def pytest_collection_modifyitems(config, items):
    skip_once = not _collects_tensorflow_session_tests()
    skip_jax_only = keras.backend.backend() != "jax"
    kept, deselected = [], []
    for item in items:
        marked = (skip_once and item.get_closest_marker(ONCE) is not None) or (
            skip_jax_only and item.get_closest_marker(JAX_ONLY) is not None
        )
        (deselected if marked else kept).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


def pytest_report_header(config):
    lines = []
    if _collects_tensorflow_session_tests():
        lines.append(f"{ONCE} tests: collected")
    else:
        lines.append(
            f"{ONCE} tests: deselected on the {keras.backend.backend()} "
            "backend (they run once, in the tensorflow session)"
        )
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        path = "oneDNN" if tensorflow_onednn_enabled() else "Eigen (no oneDNN)"
        lines.append(
            f"keras {keras.__version__}, tensorflow {tf.__version__}, "
            f"CPU path: {path}"
        )
    return lines


@pytest.fixture
def rng():
    """A seeded NumPy generator, and seeded Keras weight initialization."""
    keras.utils.set_random_seed(1234)
    return np.random.default_rng(1234)


@pytest.fixture
def float32_policy():
    """Restores the global `float32` dtype policy after the test."""
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


@pytest.fixture
def float64():
    """JAX computes in float32 unless 64-bit mode is on; scope it."""
    if keras.backend.backend() == "jax":
        import jax

        with jax.enable_x64(True):
            yield
    else:
        with contextlib.nullcontext():
            yield
