# Every target runs inside the repo's own virtual environment, created by `make install`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# gpu-site: any pip will do, e.g. PIP="python3 -m pip" where the venv has none
PIP ?= $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint format bench gpu-site gpu-data gpu-prep clean

install: $(STAMP)

# Re-installs when the dependency lists change; the constraints file pins the tested set.
$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements/constraints.txt -e ".[dev,wandb,tensorboard,cluster,callbacks]"
	touch $(STAMP)

demo: install  ## the README's main job: plain vs residual, 20 vs 56 layers, embedded data
	$(PY) -m degradation.run experiment=demo

# Two pytest workers, each test file on one of them (its module fixtures are made once), one
# thread per torch process (conftest.py): most tests wait on a `python -m degradation.run`
# subprocess, so two at once use both cores of a 2-core machine without OpenMP contention.
TEST_WORKERS ?= 2
TEST_ARGS := -q -n $(TEST_WORKERS) --dist loadfile

test: install
	$(PY) -m pytest $(TEST_ARGS)

test-fast: install  ## skips tests marked slow
	$(PY) -m pytest $(TEST_ARGS) -m "not slow"

lint: install
	$(PY) -m ruff check src tests experiments
	$(PY) -m ruff format --check src tests experiments

format: install
	$(PY) -m ruff format src tests experiments
	$(PY) -m ruff check --fix src tests experiments

bench: install  ## throughput: the common recipe vs the framework's step (docs/benchmarks.md)
	$(PY) -m degradation.bench --json outputs/bench.json

# What the lent GPU machine (torch, torchvision, Lightning, joblib, PyYAML; no Hydra) lacks for
# experiments/gpu/run.sh, at the versions pinned in requirements/constraints.txt. All pure
# Python (checked: no compiled file), so one folder serves the Python 3.12 there; it travels
# as an ignored, carried path and goes on PYTHONPATH.
GPU_SITE_PACKAGES := hydra-core omegaconf antlr4-python3-runtime hydra-joblib-launcher
# Fashion-MNIST's four idx files (Debian's dataset-fashion-mnist), carried the same way.
FASHION_MNIST_DIR ?= /usr/share/datasets/fashion-mnist
FASHION_MNIST_FILES := train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz \
	t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz
# what one `run` call carries at most, working tree included (experiments/gpu/README.md)
CARRY_LIMIT_MB := 64

gpu-site: install
	rm -rf .gpu-site
	$(PIP) install --quiet --no-deps --target .gpu-site -c requirements/constraints.txt \
		$(GPU_SITE_PACKAGES)
	@! find .gpu-site -name '*.so' -o -name '*.pyd' | grep . || \
		{ echo "error: .gpu-site holds compiled files; it must be pure Python" >&2; exit 1; }

gpu-data:
	mkdir -p .gpu-data/fashion-mnist
	cp -p $(addprefix $(FASHION_MNIST_DIR)/,$(FASHION_MNIST_FILES)) .gpu-data/fashion-mnist/

gpu-prep: gpu-site gpu-data  ## everything experiments/gpu/run.sh carries; checks the size
	@tree=$$(git ls-files --cached --others --exclude-standard); \
		total=$$(du -sc --apparent-size --block-size=1M .gpu-site .gpu-data $$tree | tail -1 | cut -f1); \
		echo "working tree + .gpu-site + .gpu-data: $$total MiB"; \
		test $$total -lt $(CARRY_LIMIT_MB) || { echo "error: over $(CARRY_LIMIT_MB) MiB" >&2; exit 1; }

clean:
	rm -rf outputs multirun build dist src/*.egg-info .pytest_cache .ruff_cache test-artifacts
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
