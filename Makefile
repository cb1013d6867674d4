# Developer and CI entry points. Needs only python3 and GNU make.

PY ?= python3
VENV = .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed

# Source folders to lint; only those that exist.
LINT_DIRS = $(wildcard keras_convgru tests examples benchmarks)

export TF_CPP_MIN_LOG_LEVEL = 2

.PHONY: install lint test test-tf test-jax test-torch docs docs-serve demo \
	next-frame bench bench-memory clean distclean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install pip==26.3
	$(BIN)/python -m pip install -c constraints.txt -e ".[all]"
	touch $@

install: $(STAMP)

lint: install
	$(BIN)/ruff check $(LINT_DIRS)
	$(BIN)/ruff format --check $(LINT_DIRS)

# Every backend always runs, then the strict docs build; the target fails
# if any one of them fails.
test: install lint
	status=0; \
	KERAS_BACKEND=tensorflow $(BIN)/python -m pytest -q || status=1; \
	KERAS_BACKEND=jax $(BIN)/python -m pytest -q || status=1; \
	KERAS_BACKEND=torch $(BIN)/python -m pytest -q || status=1; \
	$(MAKE) --no-print-directory docs || status=1; \
	exit $$status

test-tf: install
	KERAS_BACKEND=tensorflow $(BIN)/python -m pytest -q

test-jax: install
	KERAS_BACKEND=jax $(BIN)/python -m pytest -q

test-torch: install
	KERAS_BACKEND=torch $(BIN)/python -m pytest -q

# The documentation site, built strictly into site/ (a warning fails it).
docs: install
	$(BIN)/mkdocs build --strict --site-dir site

docs-serve: install
	$(BIN)/mkdocs serve

# The main job: a ConvGRU finds a small drone that no single frame shows.
demo: install
	KERAS_BACKEND=tensorflow $(BIN)/python examples/flyby_tracking.py

# Next-frame prediction on Moving Digits: ConvGRU2D vs two ConvLSTM2Ds.
next-frame: install
	KERAS_BACKEND=tensorflow $(BIN)/python examples/next_frame.py

# Side-by-side speed and memory (TensorFlow backend, CPU); see
# docs/performance.md. Takes 2-3 hours on 2 cores: every peer
# runs 3 times, each time in its own process. With jit_compile only the
# workloads where XLA's CPU loop gradient finishes in minutes. Results:
# benchmarks/results/<date>-cpu-tensorflow-jit-{off,on}.md.
bench: install
	KERAS_BACKEND=tensorflow $(BIN)/python benchmarks/bench_convrnn.py \
		--jit off
	KERAS_BACKEND=tensorflow $(BIN)/python benchmarks/bench_convrnn.py \
		--jit on --workloads small,medium,long-T10

# Training-step memory as the steps and the frame double (docs/scaling.md).
bench-memory: install
	KERAS_BACKEND=tensorflow $(BIN)/python benchmarks/bench_memory.py

clean:
	rm -rf build dist site *.egg-info .pytest_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d \
		-exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
