"""Benchmarks run only when asked for: MAML_EVIDENCE_BENCHMARKS=1, or an explicit ``-m benchmark``.

The quick suite (``pytest -q``) collects them and reports them as skipped, so they never slow it down.
"""

from __future__ import annotations

import os

import pytest

ENV = "MAML_EVIDENCE_BENCHMARKS"


def benchmarks_requested(config: pytest.Config) -> bool:
    if os.environ.get(ENV) == "1":
        return True
    expression = " ".join(str(config.getoption("-m") or "").split())
    return "benchmark" in expression and "not benchmark" not in expression


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if benchmarks_requested(config):
        return
    skip = pytest.mark.skip(reason=f"benchmark: run with {ENV}=1 or -m benchmark")
    for item in items:
        if item.get_closest_marker("benchmark") is not None:
            item.add_marker(skip)
