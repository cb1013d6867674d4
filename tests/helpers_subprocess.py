"""Run functions of the test modules in fresh Python processes.

The portability and distribution tests need processes with their own
`KERAS_BACKEND`, `TF_CONFIG` or `XLA_FLAGS`. `run_parallel` starts a batch
of them at once (importing TensorFlow, JAX or PyTorch takes most of their
time), bounds them all with one deadline, and kills every process group it
started if anything fails or times out, so no worker outlives its test.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(TESTS_DIR)


class Job:
    """`module.function(*args)` in a subprocess with extra environment."""

    def __init__(self, label, module, function, args=(), env=None):
        self.label = label
        self.module = module
        self.function = function
        self.args = list(args)
        self.env = dict(env or {})

    def command(self):
        code = (
            "import json, sys\n"
            f"import {self.module} as module\n"
            f"module.{self.function}(*json.loads(sys.argv[1]))\n"
        )
        return [sys.executable, "-c", code, json.dumps(self.args)]

    def environment(self):
        env = dict(os.environ)
        path = [TESTS_DIR, REPO_DIR]
        if env.get("PYTHONPATH"):
            path.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(path)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        env.update(self.env)
        return env


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
    """Run the jobs at once; return {label: (exit code, output)}.

    All jobs share one deadline of `timeout` seconds; a job still running
    then is killed and reported with exit code None. With
    `stop_on_failure`, the first job to fail stops the others. Every
    process group started here is killed before returning or raising.
    """
    started = []
    logs = []
    try:
        for job in jobs:
            log = tempfile.TemporaryFile(mode="w+")
            logs.append(log)
            process = subprocess.Popen(
                job.command(),
                env=job.environment(),
                cwd=TESTS_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            started.append((job, process, log))
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for _, p, _ in started):
            if time.monotonic() > deadline:
                break
            if stop_on_failure and any(
                p.poll() not in (None, 0) for _, p, _ in started
            ):
                break
            time.sleep(0.2)
        results = {}
        for job, process, log in started:
            unfinished = process.poll() is None
            _kill(process)
            log.seek(0)
            code = None if unfinished else process.returncode
            results[job.label] = (code, log.read())
        return results
    finally:
        for _, process, _ in started:
            _kill(process)
        for log in logs:
            log.close()


def assert_succeeded(results, labels=None):
    """Every job (or the named ones) exited with 0; else show their output."""
    failures = []
    for label in labels or results:
        code, output = results[label]
        if code != 0:
            why = "stopped unfinished" if code is None else f"exit code {code}"
            failures.append(f"--- {label}: {why}\n{output[-4000:]}")
    if failures:
        raise AssertionError("\n".join(failures))
