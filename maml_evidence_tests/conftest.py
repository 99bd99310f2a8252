"""What every suite shares: the environment guard, and one ingested evidence home for the whole session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def environment_unchanged(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves an environment variable set, changed or removed (monkeypatch's are undone first)."""
    before = _environment()
    yield
    after = _environment()
    if after != before:
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        for key in changed:  # restore, so one leak does not fail every later test
            if key in before:
                os.environ[key] = before[key]
            else:
                os.environ.pop(key, None)
        pytest.fail(f"{request.node.nodeid} left the environment changed: {', '.join(changed)}", pytrace=False)


def _environment() -> dict[str, str]:
    # pytest itself sets PYTEST_CURRENT_TEST per phase
    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The policy suite's spike runs ingested once per session through the real pipeline (copied per test)."""
    from maml_evidence_tests.policy.conftest import build_template

    yield from build_template(tmp_path_factory)
