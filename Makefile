# Two commands do all the set-up on a fresh machine:
#   make reports   runs the main job (every notebook, headless, into reports/)
#   make test      runs the test suite (pytest + nbval)
#   make lint      ruff check and ruff format --check (CI runs it before the tests)
# Both create or update the local virtual environment .venv from pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test reports lint install clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

reports: $(STAMP)
	$(PY) -m dcclib.lab.reports $(REPORTS_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean-venv:
	rm -rf $(VENV)
