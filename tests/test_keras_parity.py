"""Keras's own ConvLSTM tests pass on our ConvLSTM classes.

Keras's test files for its ConvLSTM layers (`conv_lstm1d_test.py`,
`conv_lstm2d_test.py`, `conv_lstm3d_test.py`, `conv_lstm_test.py` in
`keras/src/layers/rnn/`) are read from the installed Keras package at test
time, never copied into this repository. Their import lines are rewritten
so that every ConvLSTM class they construct is ours:

* `layers.ConvLSTM1D/2D/3D` -> `keras_convgru.ConvLSTM1D/2D/3D`;
* Keras's `ConvLSTMCell(rank, ...)` -> `keras_convgru.ConvLSTMCell`;
* Keras's rank-generic base layer `ConvLSTM(rank, ...)` -> the
  `keras_convgru.ConvLSTM{rank}D` of that rank (we have no public
  rank-generic layer; the rank classes are what users construct).

A rewrite that misses a line it expects fails loudly, so a change in
Keras's files cannot silently turn into tests of Keras's own classes. The
rewritten files run in pytest subprocesses (one per file, at once) on this
session's backend; every Keras test is one test here, and each must pass.

Keras's wheels before 3.15.1 ship no test files (3.8.0 to 3.15.0 checked).
With such a Keras installed (CI's oldest-versions session runs Keras 3.8),
`KC_KERAS_TESTS_FROM` names another Keras package folder whose test files
to use (`make test-tf-oldest` points it at the main venv's Keras 3.15.1).
Those newer files may call the installed, older test harness
(`keras.src.testing.TestCase`) with keyword arguments it does not know yet;
the only ones are `tpu_atol`/`tpu_rtol`, which apply on TPUs alone, so for
such a harness they are dropped (off TPUs the newer harness ignores them
too).
"""

import ast
import os
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import keras
import pytest
from helpers import Job
from helpers import python
from helpers import run_parallel

REPO_DIR = Path(__file__).resolve().parent.parent
KERAS_TEST_FILES = (
    "conv_lstm1d_test.py",
    "conv_lstm2d_test.py",
    "conv_lstm3d_test.py",
    "conv_lstm_test.py",
)
RNN_TESTS = Path("src", "layers", "rnn")

# (file, line Keras's file must contain, what it becomes). Every line is
# required: a missing one fails the rewrite.
IMPORT_REWRITES = {
    "conv_lstm1d_test.py": [
        ("from keras.src import layers", "import keras_convgru as layers"),
    ],
    "conv_lstm2d_test.py": [
        ("from keras.src import layers", "import keras_convgru as layers"),
    ],
    "conv_lstm3d_test.py": [
        ("from keras.src import layers", "import keras_convgru as layers"),
    ],
    "conv_lstm_test.py": [
        (
            "from keras.src.layers.rnn.conv_lstm import ConvLSTM",
            "from _kc_keras_compat import ConvLSTM",
        ),
        (
            "from keras.src.layers.rnn.conv_lstm import ConvLSTMCell",
            "from keras_convgru import ConvLSTMCell",
        ),
    ],
}
HARNESS_IMPORT = (
    "from keras.src import testing",
    "import _kc_keras_compat as testing",
)

COMPAT_MODULE = '''\
"""Our classes under the names Keras's ConvLSTM tests import."""

import inspect

import keras_convgru
from keras.src import testing as _testing
from keras.src.testing import *  # noqa: F401,F403

_RANK_LAYERS = {
    1: keras_convgru.ConvLSTM1D,
    2: keras_convgru.ConvLSTM2D,
    3: keras_convgru.ConvLSTM3D,
}


def ConvLSTM(rank, *args, **kwargs):
    """Keras's rank-generic `ConvLSTM(rank, ...)`: our layer of that rank."""
    return _RANK_LAYERS[rank](*args, **kwargs)


_TPU_ONLY = ("tpu_atol", "tpu_rtol")


def _knows_tpu_tolerances(method):
    return "tpu_atol" in inspect.signature(method).parameters


class TestCase(_testing.TestCase):
    """The installed harness; on one older than the test files, TPU-only
    tolerances are dropped (they change nothing off TPUs)."""

    if not _knows_tpu_tolerances(_testing.TestCase.assertAllClose):

        def assertAllClose(self, *args, **kwargs):
            for name in _TPU_ONLY:
                kwargs.pop(name, None)
            return super().assertAllClose(*args, **kwargs)

    if not _knows_tpu_tolerances(_testing.TestCase.run_layer_test):

        def run_layer_test(self, *args, **kwargs):
            for name in _TPU_ONLY:
                kwargs.pop(name, None)
            return super().run_layer_test(*args, **kwargs)
'''


def _keras_package_version(package_dir):
    text = (package_dir / "src" / "version.py").read_text()
    match = re.search(r'__version__ = "([^"]+)"', text)
    assert match, f"no __version__ in {package_dir / 'src' / 'version.py'}"
    return match.group(1)


def _keras_tests_source():
    """(folder with Keras's ConvLSTM test files, that Keras's version)."""
    installed = Path(keras.__file__).resolve().parent
    if all((installed / RNN_TESTS / f).is_file() for f in KERAS_TEST_FILES):
        return installed / RNN_TESTS, keras.__version__
    other = os.environ.get("KC_KERAS_TESTS_FROM")
    if not other:
        raise RuntimeError(
            f"Keras {keras.__version__} at {installed} ships no ConvLSTM "
            "test files and KC_KERAS_TESTS_FROM (a Keras package folder "
            "that has them) is not set"
        )
    other = Path(other).resolve()
    missing = [
        f for f in KERAS_TEST_FILES if not (other / RNN_TESTS / f).is_file()
    ]
    if missing:
        raise RuntimeError(
            f"KC_KERAS_TESTS_FROM={other} has no {', '.join(missing)} "
            f"under {RNN_TESTS}"
        )
    return other / RNN_TESTS, _keras_package_version(other)


def _rewrite(name, source):
    """Keras's test file `name` with our classes swapped in."""
    lines = source.splitlines()
    for old, new in IMPORT_REWRITES[name] + [HARNESS_IMPORT]:
        hits = [i for i, line in enumerate(lines) if line.strip() == old]
        if len(hits) != 1:
            raise RuntimeError(
                f"Keras's {name}: expected the line {old!r} once, found it "
                f"{len(hits)} times; its imports changed, update "
                "IMPORT_REWRITES in tests/test_keras_parity.py"
            )
        lines[hits[0]] = new
    rewritten = "\n".join(lines) + "\n"
    # Nothing may still reach Keras's ConvLSTM classes.
    leftover = re.findall(
        r"keras\.src\.layers\.rnn\.conv_lstm\w*|keras\.layers\.ConvLSTM\w*",
        rewritten,
    )
    if leftover:
        raise RuntimeError(
            f"Keras's {name} still refers to {sorted(set(leftover))} "
            "after the rewrite"
        )
    return rewritten


def _test_ids(name, source):
    """`file::Class::test_name` of every test method in a Keras file."""
    ids = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name.startswith(
                    "test"
                ):
                    ids.append(f"{name}::{node.name}::{item.name}")
    return ids


KERAS_TESTS_DIR, KERAS_TESTS_VERSION = _keras_tests_source()
KERAS_SOURCES = {
    name: (KERAS_TESTS_DIR / name).read_text() for name in KERAS_TEST_FILES
}
KERAS_TEST_IDS = [
    test_id
    for name, source in KERAS_SOURCES.items()
    for test_id in _test_ids(name, source)
]


def _run_pytest_per_file(folder, env, timeout):
    """pytest on each Keras file at once, one process each (most of their
    time is the backend compiling, one core each); {file: output}."""
    jobs = [
        Job(
            name,
            python(
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                f"--junitxml={folder / name}.xml",
                name,
            ),
            env,
            cwd=folder,
        )
        for name in KERAS_TEST_FILES
    ]
    results = run_parallel(jobs, timeout, stop_on_failure=False)
    return {name: results[name].output for name in KERAS_TEST_FILES}


@pytest.fixture(scope="module")
def keras_test_results(tmp_path_factory):
    """Run the rewritten files once; {test id: (outcome, message)}."""
    folder = tmp_path_factory.mktemp("keras_conv_lstm_tests")
    for name, source in KERAS_SOURCES.items():
        (folder / name).write_text(_rewrite(name, source))
    (folder / "_kc_keras_compat.py").write_text(COMPAT_MODULE)
    # An ini file here keeps pytest from reading ours (or any above);
    # Keras's conftest.py registers the marker its older files use.
    (folder / "pytest.ini").write_text(
        "[pytest]\nmarkers =\n    requires_trainable_backend\n"
    )
    env = dict(os.environ)
    env["KERAS_BACKEND"] = keras.backend.backend()
    env["PYTHONPATH"] = os.pathsep.join(
        [str(folder), str(REPO_DIR)]
        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    outputs = _run_pytest_per_file(folder, env, timeout=600)
    results = {}
    for name in KERAS_TEST_FILES:
        report = folder / f"{name}.xml"
        assert report.is_file(), (
            f"pytest wrote no report for {name}:\n{outputs[name][-4000:]}"
        )
        for case in ElementTree.parse(report).iter("testcase"):
            cls = case.get("classname").split(".")[-1]
            test_id = f"{name}::{cls}::{case.get('name')}"
            outcome, message = "passed", ""
            for kind in ("failure", "error", "skipped"):
                element = case.find(kind)
                if element is not None:
                    outcome = kind
                    message = (element.get("message") or "") + "\n"
                    message += element.text or ""
            results[test_id] = (outcome, message)
    return {"results": results, "output": "\n".join(outputs.values())}


def test_keras_conv_lstm_test_files_are_found_and_rewritten():
    # Each file has tests, and the rewrite finds every line it expects.
    for name, source in KERAS_SOURCES.items():
        assert _test_ids(name, source), f"no tests in Keras's {name}"
        rewritten = _rewrite(name, source)
        for _, new in IMPORT_REWRITES[name]:
            assert new in rewritten
        # Every file checks numbers against Keras's own hand-checked ones.
        assert any(
            t.endswith("::test_correctness") for t in _test_ids(name, source)
        ), name


def test_rewrite_fails_loudly_when_keras_imports_change():
    source = KERAS_SOURCES["conv_lstm2d_test.py"].replace(
        "from keras.src import layers", "from keras import layers"
    )
    with pytest.raises(RuntimeError, match="expected the line"):
        _rewrite("conv_lstm2d_test.py", source)


def test_every_keras_test_ran_exactly_once(keras_test_results):
    ran = sorted(keras_test_results["results"])
    assert ran == sorted(KERAS_TEST_IDS), keras_test_results["output"][-4000:]


@pytest.mark.parametrize("keras_test", KERAS_TEST_IDS)
def test_keras_conv_lstm_test_passes_on_our_classes(
    keras_test, keras_test_results
):
    results = keras_test_results["results"]
    assert keras_test in results, (
        f"{keras_test} did not run (Keras {KERAS_TESTS_VERSION}'s tests):\n"
        + keras_test_results["output"][-4000:]
    )
    outcome, message = results[keras_test]
    assert outcome == "passed", (
        f"Keras {KERAS_TESTS_VERSION}'s {keras_test} on Keras "
        f"{keras.__version__}, {keras.backend.backend()} backend: "
        f"{outcome}\n{message[-3000:]}"
    )
