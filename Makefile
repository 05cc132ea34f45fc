# Beemesh developer entry points. `make run` and `make test` each do all set-up themselves.
PYTHON ?= /usr/bin/python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
JOBS ?= 2

.PHONY: install deps run test test-unit test-mesh lint bench soak sim clean

install: deps $(STAMP)

# Debian packages and binfmt (lost on reboot): checked every time, ~1 s when all present.
deps:
	bash packaging/system-deps.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: install
	$(PY) -m beemesh demo

test: install pyz
	$(PY) -m pytest -n $(JOBS) --dist loadfile -q --durations=30

test-unit: install
	$(PY) -m pytest -q tests/unit

test-mesh: install
	$(PY) -m pytest -q tests/mesh

lint: install
	$(VENV)/bin/ruff check agent tests packaging

bench: install pyz
	$(PY) tests/bench/run.py --out bench-results.json
	$(PY) packaging/bench_pyz.py bench-pyz.json

# 30 minutes of apply/scale/delete on 3 machines: RSS and open files over time (not in CI).
soak: install
	$(PY) tests/bench/soak.py --minutes 30 --out soak-results.json

# Discrete-event simulation of membership and scheduling at 100..100,000 machines, driving the
# real sans-IO cores (issue 21; ~15 min on 2 cores; `--sizes 100,1000` for a quick look).
sim: install
	$(PY) tests/sim/run.py --out sim-results.json

clean:
	rm -rf $(VENV) dist build .cache .pytest_cache

include packaging/pyz.mk
