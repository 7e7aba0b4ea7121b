# make demo  — install into .venv if needed, then run a small LSH search (local Ray, CPU, real PTB slice)
# make test  — install into .venv if needed, then run the test suite
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTHON ?= python3
OUT    ?= runs

.PHONY: install test test-fast demo bench clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not ray and not slow"

demo: install
	$(PY) -m lsh_tune train-dense --model stacked_lstm --preset tiny --corpus ptb --max-tokens 60000 \
		--epochs 3 --device cpu --out $(OUT)/demo-dense-$$(date +%Y%m%d-%H%M%S)

bench: install
	$(PY) benchmarks/bench_lyapunov.py
	$(PY) benchmarks/bench_sparse.py

clean:
	rm -rf $(VENV) .pytest_cache
