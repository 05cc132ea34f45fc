# Single-file builds: dist/beemesh-<version>-linux-{x86_64,aarch64}.pyz (packaging/README.md).
# Included from the top Makefile (`include packaging/pyz.mk`); run from the repository root.
# First run on a machine: `sh packaging/ci-setup.sh` as root (Debian packages, binfmt).

PYZ_PYTHON ?= /usr/bin/python3
PYZ_VENV_PYTHON ?= .venv/bin/python
PYZ_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
PYZ_BUILD := $(PYZ_PYTHON) $(PYZ_DIR)/build_pyz.py

.PHONY: pyz pyz-x86_64 pyz-aarch64 pyz-repro pyz-platforms pyz-constraints pyz-test \
	pyz-bench pyz-clean

## pyz: build both .pyz files into dist/ (cached under .cache/pyz)
pyz:
	$(PYZ_BUILD) build

pyz-x86_64:
	$(PYZ_BUILD) build --arch x86_64

pyz-aarch64:
	$(PYZ_BUILD) build --arch aarch64

## pyz-repro: build everything twice from one snapshot (2nd with an empty pex cache), compare
pyz-repro:
	$(PYZ_BUILD) repro

## pyz-platforms: regenerate packaging/platforms/*.json (commit the result)
pyz-platforms:
	$(PYZ_BUILD) platforms

## pyz-constraints: re-pin packaging/pyz-constraints.txt from the files in dist/ (commit it)
pyz-constraints:
	$(PYZ_BUILD) constraints

## pyz-test: the packaging tests, ARM proof included (builds the files if missing)
pyz-test:
	$(PYZ_VENV_PYTHON) -m pytest tests/packaging

## pyz-bench: sizes, cold/warm start, idle agent RSS (.pyz vs venv) -> .cache/pyz/bench.json
pyz-bench: pyz
	$(PYZ_VENV_PYTHON) $(PYZ_DIR)/bench_pyz.py .cache/pyz/bench.json

pyz-clean:
	rm -rf .cache/pyz dist/beemesh-*-linux-*.pyz
