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
"""

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


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        f"{ONCE}: runs once per CI run, in the TensorFlow-backend session "
        "(its own subprocesses cover the other backends); "
        "KC_TENSORFLOW_SESSION_TESTS=1 collects it in every session",
    )


def _collects_tensorflow_session_tests():
    return (
        keras.backend.backend() == "tensorflow"
        or os.environ.get("KC_TENSORFLOW_SESSION_TESTS") == "1"
    )


def pytest_collection_modifyitems(config, items):
    if _collects_tensorflow_session_tests():
        return
    kept, deselected = [], []
    for item in items:
        marked = item.get_closest_marker(ONCE) is not None
        (deselected if marked else kept).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


def pytest_report_header(config):
    if _collects_tensorflow_session_tests():
        return f"{ONCE} tests: collected"
    return (
        f"{ONCE} tests: deselected on the {keras.backend.backend()} "
        "backend (they run once, in the tensorflow session)"
    )


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
