"""make reports (and pip install .) get the runtime only; test and cluster tools come with make test."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[1]
TOOLS = ("pytest", "nbval", "ruff", "hypothesis", "submitit", "ray")


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower()


def test_runtime_dependencies_hold_no_test_or_cluster_tool():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = {_name(r) for r in project["dependencies"]}
    assert not runtime & set(TOOLS), runtime & set(TOOLS)
    dev = {_name(r) for r in project["optional-dependencies"]["dev"]}
    assert set(TOOLS) <= dev


def test_make_reports_installs_the_runtime_and_make_test_the_dev_extra():
    text = (REPO / "Makefile").read_text()
    rules = dict(re.findall(r"^([A-Za-z$()_.-]+):[^\n]*\n((?:\t[^\n]*\n)*)", text, flags=re.M))
    deps = dict(re.findall(r"^([a-z-]+): (\S+)", text, flags=re.M))
    assert deps["reports"] == "$(RUNTIME)" and deps["test"] == "$(STAMP)" and deps["lint"] == "$(STAMP)"
    assert "install --quiet -e .\n" in rules["$(RUNTIME)"] and "[dev]" not in rules["$(RUNTIME)"]
    assert '-e ".[dev]"' in rules["$(STAMP)"]
