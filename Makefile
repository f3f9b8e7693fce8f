# Two commands do all the set-up on a fresh machine:
#   make reports   runs the main job (every notebook, headless, into reports/local/; see below)
#   make test      runs the test suite (pytest + nbval)
#   make lint      ruff check and ruff format --check (CI runs it before the tests)
# Both create or update the local virtual environment .venv from pyproject.toml.
#   make gpu-check the one-command GPU check (<= 8 min on one H100/H200; reports/performance.md)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Two environments in one .venv: the runtime (make reports: pip install -e .) and, on top of it,
# the test and cluster tools (make test, make lint: the dev extra: pytest, nbval, ruff, hypothesis,
# submitit, ray). make reports never installs the dev extra.
RUNTIME := $(VENV)/.installed-runtime
STAMP := $(VENV)/.installed

.PHONY: test reports lint install install-runtime clean-venv gpu-check

$(RUNTIME): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $(RUNTIME)

$(STAMP): $(RUNTIME)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install-runtime: $(RUNTIME)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# make reports: the profile is chosen by the machine (--profile auto, printed in one line): quick
# with a CUDA device, else cpu when the real MNIST / Fashion-MNIST / CIFAR-10 are under the data
# root (or can be downloaded), else smoke (the embedded stand-in digits, offline). Variables:
#   DATA_ROOT=DIR   the datasets' folder (--data-root; default $DCC_DATA_ROOT, else ./data), e.g.
#                   make reports DATA_ROOT=../shared/data
#   PROFILE=NAME    auto (default), smoke, cpu, quick or paper (paper only when asked for)
#   REPORTS_ARGS    any other option of python -m dcclib.lab.reports, e.g. REPORTS_ARGS="--only 04"
#   PUBLISH=1       write into the shipped reports/ (default: reports/local/, git-ignored; a shipped
#                   report of a higher profile is never replaced)
reports: $(RUNTIME)
	$(PY) -m dcclib.lab.reports $(if $(PUBLISH),--publish) $(if $(PROFILE),--profile $(PROFILE)) $(if $(DATA_ROOT),--data-root $(DATA_ROOT)) $(REPORTS_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The GPU check installs nothing (a GPU image may have no network): .venv's python when there is
# one, else python3 (with PyTorch). GPU_CHECK_ARGS: e.g. --data-root DIR (a folder holding
# cifar10-jpeg/; default data/), --budget SECONDS, --sections a,b; --help lists them.
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),python3)
GPU_CHECK_ARGS ?= --data-root data

gpu-check:
	PYTHONUNBUFFERED=1 $(GPU_PY) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

clean-venv:
	rm -rf $(VENV)
