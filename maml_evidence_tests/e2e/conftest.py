"""End-to-end fixtures: record each test's outcome so a failing browser test can save a screenshot of its page."""

from __future__ import annotations

import pytest


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # noqa: ANN201 - a pytest hook
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
