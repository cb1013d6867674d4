"""The wheel and the sdist, built as an index would get them.

Built with setuptools' own PEP 517 backend (what `pip` and `python -m
build` call) from a copy of the files git tracks, so nothing is written
into the checkout. The wheel holds the package and its metadata; the sdist
also holds what its test suite reads (tests, docs, examples, benchmarks),
so the suite can run from an unpacked sdist.
"""

import email
import os
import re
import shutil
import tarfile
import zipfile

import pytest
from helpers import Job
from helpers import python
from helpers import run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = """
import sys
from setuptools import build_meta
out = sys.argv[1]
wheel = build_meta.build_wheel(out)
sdist = build_meta.build_sdist(out)
print("BUILT", wheel, sdist)
"""


def tracked_files():
    command = ["git", "ls-files", "--cached", "--others", "--exclude-standard"]
    result = run(Job("git", command, cwd=ROOT, separate_stderr=True), 300)
    assert result.code == 0, result.errors
    return [
        f
        for f in result.output.splitlines()
        if os.path.isfile(os.path.join(ROOT, f))
    ]


@pytest.fixture(scope="module")
def distributions(tmp_path_factory):
    source = tmp_path_factory.mktemp("source")
    for name in tracked_files():
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.join(ROOT, name), target)
    out = tmp_path_factory.mktemp("dist")
    proc = run(
        Job(
            "build",
            python("-c", BUILD, out),
            cwd=source,
            separate_stderr=True,
        ),
        300,
    )
    assert proc.code == 0, proc.errors[-3000:]
    built = [
        line for line in proc.output.splitlines() if line.startswith("BUILT")
    ]
    _, wheel_name, sdist_name = built[-1].split()
    return out / wheel_name, out / sdist_name


def test_wheel_holds_the_package_and_its_metadata(distributions):
    wheel, _ = distributions
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata_name = next(n for n in names if n.endswith("/METADATA"))
        metadata = email.message_from_string(
            archive.read(metadata_name).decode()
        )
    modules = {n for n in names if n.startswith("keras_convgru/")}
    for module in ("__init__.py", "conv_gru.py", "conv_lstm.py", "conv_rnn.py"):
        assert f"keras_convgru/{module}" in modules
    assert not [n for n in names if n.startswith(("tests/", "docs/"))]
    assert any(n.endswith("licenses/LICENSE") for n in names)
    assert metadata["Name"] == "keras-convgru"
    assert "keras>=3.8" in metadata.get_all("Requires-Dist")
    urls = dict(
        url.split(", ", 1) for url in metadata.get_all("Project-URL") or []
    )
    assert {"Documentation", "Source", "Changelog"} <= set(urls)
    assert all(url.startswith("https://") for url in urls.values())


def test_readme_links_work_on_an_index_page(distributions):
    # The README is the long description: relative links would break.
    wheel, _ = distributions
    with zipfile.ZipFile(wheel) as archive:
        metadata_name = next(
            n for n in archive.namelist() if n.endswith("/METADATA")
        )
        description = archive.read(metadata_name).decode()
    links = re.findall(r"\]\(([^)]+)\)", description)
    assert links
    assert all(link.startswith("https://") for link in links), links


def test_sdist_carries_what_its_tests_read(distributions):
    _, sdist = distributions
    with tarfile.open(sdist) as archive:
        names = {
            name.split("/", 1)[1] for name in archive.getnames() if "/" in name
        }
    for needed in (
        "pyproject.toml",
        "README.md",
        "LICENSE",
        "CHANGELOG.md",
        "mkdocs.yml",
        "tests/conftest.py",
        "tests/reference.py",
        "tests/helpers.py",
        "tests/reference_traj.py",
        "docs/index.md",
        "docs/_ext/keras_docstrings.py",
        "examples/flyby_tracking.py",
        "benchmarks/bench_convrnn.py",
        "keras_convgru/conv_rnn.py",
    ):
        assert needed in names, needed
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.startswith((".venv", "site/"))]
