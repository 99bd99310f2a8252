"""``maml-evidence doctor``: find damaged evidence and set it aside so it can be rebuilt from stored payloads.

The stored payload revisions are the source of truth; every table row is derived from them. A damaged
table file is therefore moved to ``damaged/`` (never deleted) and its spike runs are re-evaluated.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from maml_evidence.store.evidence import EvidenceStore
from maml_evidence.store.home import StoreError
from maml_evidence.store.schema import TABLES
from maml_evidence.store.tables import KEYS_SUFFIX, Damage

ORPHAN_AGE_SECONDS = 600


@dataclass(frozen=True)
class Finding:
    severity: str  # "error" or "warning"
    subject: str
    message: str
    spike_run_ids: tuple[str, ...] = ()

    def __str__(self) -> str:
        runs = f" [spike runs: {', '.join(self.spike_run_ids[:10])}{' ...' if len(self.spike_run_ids) > 10 else ''}]"
        return f"{self.severity.upper():7} {self.subject}: {self.message}{runs if self.spike_run_ids else ''}"


@dataclass
class Diagnosis:
    findings: list[Finding] = field(default_factory=list)
    damage: list[Damage] = field(default_factory=list)
    orphans: list[Path] = field(default_factory=list)
    unevaluated: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]


def _full_read_problem(path: Path) -> str | None:
    try:
        pq.read_table(path)
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - any decoding failure is damage to report
        return str(exc).splitlines()[0][:200]
    return None


def diagnose(store: EvidenceStore) -> Diagnosis:
    """Check every table file (footer and full read), every payload revision and report, and leftovers."""
    result = Diagnosis()
    tables = store.tables
    for name in TABLES:
        healthy, damaged = tables.scan(name)
        for path in healthy[1:]:
            problem = _full_read_problem(path)
            if problem:
                damaged.append(Damage(name, path, tuple(tables.keys_of(path)), problem))
        for damage in damaged:
            result.damage.append(damage)
            result.findings.append(
                Finding("error", str(damage.path), f"unreadable {name} file: {damage.error}", damage.keys)
            )
        now = time.time()
        for leftover in tables.directory(name).glob(".*.partial"):
            if now - leftover.stat().st_mtime > ORPHAN_AGE_SECONDS:
                result.orphans.append(leftover)
                result.findings.append(Finding("warning", str(leftover), "temporary file left by an interrupted write"))
    for run_id in store.registry.known_ids():
        try:
            revision = store.registry.current(run_id)
            if revision is not None:
                store.registry.read(revision)
        except StoreError as exc:
            result.findings.append(Finding("error", run_id, str(exc), (run_id,)))
    result.unevaluated = store.incomplete()
    if result.unevaluated:
        result.findings.append(
            Finding(
                "warning",
                "gate",
                "stored spike runs whose evaluation is missing or incomplete",
                tuple(result.unevaluated),
            )
        )
    return result


def set_aside(store: EvidenceStore, diagnosis: Diagnosis) -> list[str]:
    """Move damaged table files to damaged/<table>/ and drop stale temporary files; returns runs to rebuild."""
    for damage in diagnosis.damage:
        target = store.home.root / "damaged" / damage.table
        target.mkdir(parents=True, exist_ok=True)
        for path in (damage.path, damage.path.with_name(damage.path.name + KEYS_SUFFIX)):
            if path.exists():
                shutil.move(str(path), target / path.name)
    for orphan in diagnosis.orphans:
        orphan.unlink(missing_ok=True)
    affected = {
        key for d in diagnosis.damage for key in d.keys if d.table in TABLES and TABLES[d.table].key == "spike_run_id"
    }
    known = set(store.registry.known_ids())
    return sorted((affected & known) | set(store.incomplete()))
