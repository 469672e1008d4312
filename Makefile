# wearssl: the two commands a fresh machine needs are `make quickstart` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first, pinned, so the dependency range in pyproject.toml installs nothing bigger
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup quickstart test test-fast test-heavy lint bench mlflow-server clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

## the main job on the embedded default: local Ray, local MLflow store, small synthetic corpus
quickstart: setup
	RAY_DATA_DISABLE_PROGRESS_BARS=1 $(PY) jobs/pretrain.py

## the whole test suite, then a real `ray job submit` against a local `ray start --head`
test: setup
	$(VENV)/bin/ruff check platform jobs tests bench
	RAY_DATA_DISABLE_PROGRESS_BARS=1 $(VENV)/bin/pytest
	bash scripts/job-submit-smoke.sh

test-fast: setup
	$(VENV)/bin/pytest -m "not slow and not heavy"

## the tests that train models to a useful accuracy (tens of minutes on 2 cores)
test-heavy: setup
	RAY_DATA_DISABLE_PROGRESS_BARS=1 $(VENV)/bin/pytest -m heavy

lint: setup
	$(VENV)/bin/ruff check platform jobs tests bench
	$(VENV)/bin/ruff format --check platform jobs tests bench

bench: setup
	$(PY) bench/run.py --device cpu --size small

mlflow-server: setup
	PATH=$(abspath $(VENV))/bin:$$PATH bash scripts/mlflow-server.sh

clean:
	rm -rf runs mlruns data/synthetic-quickstart .pytest_cache
