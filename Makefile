# Every target runs inside the repo's own virtual environment, created by `make install`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint format bench gpu-site clean

install: $(STAMP)

# Re-installs when the dependency lists change; the constraints file pins the tested set.
$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements/constraints.txt -e ".[dev,wandb,cluster]"
	touch $(STAMP)

demo: install  ## the README's main job: plain vs residual, 20 vs 56 layers, embedded data
	$(PY) -m degradation.run experiment=demo

test: install
	$(PY) -m pytest -q

test-fast: install  ## skips tests marked slow
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(PY) -m ruff check src tests experiments
	$(PY) -m ruff format --check src tests experiments

format: install
	$(PY) -m ruff format src tests experiments
	$(PY) -m ruff check --fix src tests experiments

bench: install  ## throughput: the common recipe vs the framework's step (docs/benchmarks.md)
	$(PY) -m degradation.bench --json outputs/bench.json

# What a GPU machine with torch and Lightning lacks, for experiments/gpu_bench/run.sh: pure
# Python, so one folder serves any Python 3 there (it travels as an ignored, carried path).
gpu-site: install
	rm -rf .gpu-site
	$(PY) -m pip install --quiet --no-deps --target .gpu-site -c requirements/constraints.txt \
		hydra-core omegaconf antlr4-python3-runtime

clean:
	rm -rf outputs multirun build dist src/*.egg-info .pytest_cache .ruff_cache test-artifacts
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
