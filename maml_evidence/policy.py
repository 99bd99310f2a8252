"""The organisation's threshold policy: ``thresholds.toml`` in the evidence home.

Precedence, lowest to highest: the spec's defaults, this policy, the payload's own ``thresholds`` and
``cost_profile``. The file is validated as strictly as payloads; a broken policy never falls back to defaults.
A policy version is the hash of its effective content (defaults filled in), so reformatting the file or
spelling out a default does not count as a policy change.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

from maml_evidence.gate import THRESHOLD_KEYS, PayloadValidationError, Problem
from maml_evidence.gate.errors import Collector
from maml_evidence.gate.thresholds import (
    COST_PROFILE_KEYS,
    DEFAULT_SETTING_VALUES,
    SPEC_SETTING_KEYS,
    check_overrides,
    effective_settings,
)

WHAT = "threshold policy"
POLICY_KEYS: tuple[str, ...] = (*THRESHOLD_KEYS, *COST_PROFILE_KEYS)


def effective_policy(values: Mapping[str, float | int | None]) -> dict[str, float | int | None]:
    """The policy layer over the spec's defaults: every spec threshold and the GPU price, and each other setting
    (the optional guards, the break-even inputs) where it differs from its default, so that adding a setting to the
    gate changes no existing version and spelling out a default is no new version.
    """
    merged = effective_settings(values, {}, {}).values
    return {
        key: (int(v) if key == "min_projects" else float(v)) if key in SPEC_SETTING_KEYS else v  # type: ignore[arg-type]
        for key, v in merged.items()
        if key in SPEC_SETTING_KEYS or v != DEFAULT_SETTING_VALUES[key]
    }


def policy_version(values: Mapping[str, float | int | None]) -> str:
    canonical = json.dumps(effective_policy(values), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Policy:
    """A validated policy: the keys it sets, its version and where it came from."""

    values: dict[str, float | int | None] = field(default_factory=dict)
    source: str = "defaults (no thresholds.toml)"

    @cached_property
    def version(self) -> str:
        return policy_version(self.values)

    @cached_property
    def effective(self) -> dict[str, float | int | None]:
        return effective_policy(self.values)


def parse_policy(text: str, source: str) -> Policy:
    """Parse and validate policy TOML: top-level keys only, each a known threshold key or ``gpu_hour_usd``.

    A UTF-8 byte-order mark at the start (as some Windows editors write) is accepted, as it is in payloads.
    """
    try:
        raw = tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as exc:
        raise PayloadValidationError([Problem("$", f"invalid TOML: {exc}")], source, WHAT) from None
    errors = Collector()
    for key, value in raw.items():
        if isinstance(value, dict):
            errors.add(key, f"tables are not allowed; put threshold keys at the top level ({', '.join(POLICY_KEYS)})")
    values = check_overrides({k: v for k, v in raw.items() if not isinstance(v, dict)}, "", POLICY_KEYS, errors)
    errors.raise_if_any(source, WHAT)
    return Policy(values=values, source=source)


def load_policy(path: Path) -> Policy:
    """The policy in force: the file if it exists (strictly validated), else the spec's defaults."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Policy()
    except (OSError, UnicodeDecodeError) as exc:
        raise PayloadValidationError([Problem("$", f"cannot read: {exc}")], str(path), WHAT) from None
    return parse_policy(text, str(path))
