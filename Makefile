# make demo  — install into .venv if needed, then run a small LSH search (local Ray, CPU, real PTB slice)
# make test  — install into .venv if needed, then run the test suite
# make install TORCH_INDEX=https://download.pytorch.org/whl/cpu  — torch's CPU build first (any machine; without
#   TORCH_INDEX pip takes PyPI's wheel: on Linux the CUDA 13.0 build, several GB, for an NVIDIA driver >= 580)
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTHON ?= python3
OUT    ?= runs
TORCH_INDEX ?=
TORCH  := $(shell sed -n 's/^torch==/torch==/p' requirements.txt)

.PHONY: install test test-fast test-reliability demo bench clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-test.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(if $(TORCH_INDEX),$(PY) -m pip install --quiet --disable-pip-version-check $(TORCH) --index-url $(TORCH_INDEX))
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not ray and not slow"

# The reliability suite (also part of `make test`): real tiny searches SIGKILLed at every kind of instant
# and resumed, a worker killed mid-epoch, a full disk, corrupt state files, kills inside every write, a
# diverging candidate, and the whole catalogue of bad input through the CLI. See RELIABILITY.md.
test-reliability: install
	$(PY) -m pytest -q tests/reliability tests/test_validation_cli.py tests/test_validation_properties.py

# A real LSH search whose result means something (settings in experiments/demo.py, which tests/test_demo.py
# runs too): tiny stacked LSTM, 80k-token PTB slices, sparsity 0.67, LSH-TPE, pool 5, E = 1, finalists to
# 5 epochs, local Ray with 2 CPUs. Shows the live view, then the report and the tensorboard --logdir line.
demo: install
	@$(PY) experiments/demo.py --storage-path $(abspath $(OUT)) --name demo-$$(date +%Y%m%d-%H%M%S)

bench: install
	$(PY) benchmarks/bench_lyapunov.py
	$(PY) benchmarks/bench_sparse.py

clean:
	rm -rf $(VENV) .pytest_cache
