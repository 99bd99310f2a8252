"""Intake: payload files in, accepted revisions or quarantined files out. Shared by the sensor and the CLI.

Validation is the gate core's; this module decides what a valid file means for the store: a new spike run,
an unchanged duplicate (same id, same sha256: a no-op), or a conflict (same id, different content), which is
quarantined unless the caller asked to replace. One process at a time holds the intake lock, so the sensor and
a manual ``maml-evidence ingest`` never both accept the same spike run.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from maml_evidence.gate import PayloadValidationError, parse_payload_text, validate_payload
from maml_evidence.store.files import atomic_write_text, file_lock
from maml_evidence.store.home import EvidenceHome, StoreError, check_spike_run_id
from maml_evidence.store.registry import PayloadRegistry, Revision, sha256_hex

ACCEPTED, REPLACED, UNCHANGED, QUARANTINED = "accepted", "replaced", "unchanged", "quarantined"


@dataclass(frozen=True)
class IntakeResult:
    """What happened to one file."""

    path: Path
    outcome: str
    spike_run_id: str | None = None
    revision: Revision | None = None
    message: str = ""
    needs_run: bool = False
    quarantined_to: Path | None = None


def spike_run_id_for(payload: object, path: Path) -> str:
    """The payload's ``spike_run_id`` if present, else the file's stem; validated either way."""
    if isinstance(payload, dict) and "spike_run_id" in payload:
        return check_spike_run_id(payload["spike_run_id"])
    try:
        return check_spike_run_id(path.stem)
    except StoreError as exc:
        raise StoreError(f'{exc} (taken from the file name; set "spike_run_id" in the payload)') from None


def quarantine_target(home: EvidenceHome, path: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return home.quarantine / f"{stamp}-{path.name}"


def quarantine(home: EvidenceHome, path: Path, reason: str, target: Path | None = None) -> Path:
    """Move an inbox file (copy any other file) into quarantine beside a readable reason."""
    home.quarantine.mkdir(parents=True, exist_ok=True)
    target = target or quarantine_target(home, path)
    inside_inbox = path.resolve().parent == home.inbox.resolve()
    atomic_write_text(
        target.with_name(target.name + ".reason.txt"),
        f"file: {path}\nquarantined_at: {datetime.now(UTC).isoformat()}\n\n{reason}\n",
    )
    if inside_inbox:
        shutil.move(str(path), target)
    else:
        shutil.copyfile(path, target)
    return target


def intake_files(
    home: EvidenceHome,
    paths: Iterable[Path],
    *,
    replace: bool = False,
    known_partitions: Callable[[], set[str]] | None = None,
    add_partitions: Callable[[list[str]], None] | None = None,
    accepted_by: str = "cli",
) -> list[IntakeResult]:
    """Validate and accept or quarantine each file; register new partitions before releasing the lock.

    ``known_partitions`` is read inside the lock, so a concurrent intake's partitions are always seen.
    """
    registry = PayloadRegistry(home)
    results: list[IntakeResult] = []
    home.ensure()
    with file_lock(home.locks / "intake.lock"):
        known = known_partitions() if known_partitions is not None else None
        has_partition = (lambda _id: True) if known is None else known.__contains__
        seen: dict[str, str] = {}
        for path in paths:
            result = _intake_one(home, registry, Path(path), replace, has_partition, seen, accepted_by)
            if result is not None:
                results.append(result)
        new_ids = [r.spike_run_id for r in results if r.needs_run and r.spike_run_id]
        if add_partitions is not None and new_ids:
            add_partitions(list(dict.fromkeys(new_ids)))
    return results


def _intake_one(
    home: EvidenceHome,
    registry: PayloadRegistry,
    path: Path,
    replace: bool,
    has_partition: Callable[[str], bool],
    seen: dict[str, str],
    accepted_by: str,
) -> IntakeResult | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None  # taken away between listing and reading: nothing to account for
    except OSError as exc:
        return IntakeResult(path, QUARANTINED, message=f"{path}: cannot read: {exc.strerror or exc}")
    digest = sha256_hex(data)
    try:
        payload = parse_payload_text(data, str(path))
        validate_payload(payload, str(path))
        spike_run_id = spike_run_id_for(payload, path)
    except (PayloadValidationError, StoreError) as exc:
        reason = str(exc) if isinstance(exc, PayloadValidationError) else f"{path}: {exc}"
        return IntakeResult(path, QUARANTINED, message=reason, quarantined_to=quarantine(home, path, reason))
    current = registry.current(spike_run_id)
    earlier_in_batch = seen.get(spike_run_id)
    if current is not None and current.sha256 == digest:
        seen[spike_run_id] = digest
        if earlier_in_batch is None and not has_partition(spike_run_id):
            return IntakeResult(path, ACCEPTED, spike_run_id, current, "already stored; partition re-registered", True)
        return IntakeResult(path, UNCHANGED, spike_run_id, current, f"same content as revision {current.revision}")
    if current is not None and not replace:
        # A file holding an earlier revision (the inbox copy left behind by a --replace) is history, not a conflict.
        superseded = next((r for r in registry.history(spike_run_id) if r.sha256 == digest), None)
        if superseded is not None:
            return IntakeResult(
                path,
                UNCHANGED,
                spike_run_id,
                current,
                f"same content as revision {superseded.revision}, superseded by revision {current.revision}",
            )
        target = quarantine_target(home, path)
        reason = (
            f"{path}: spike run {spike_run_id!r} already holds different evidence (revision {current.revision}, "
            f"sha256 {current.sha256[:12]}..., from {current.source_file}); this file's sha256 is {digest[:12]}.... "
            f"Evidence is never overwritten silently: to supersede it, run "
            f"`maml-evidence ingest --replace {target}` (the earlier revision stays in history), "
            f"or give this payload a new spike_run_id."
        )
        moved = quarantine(home, path, reason, target)
        return IntakeResult(path, QUARANTINED, spike_run_id, message=reason, quarantined_to=moved)
    revision = registry.accept(spike_run_id, data, str(path), accepted_by)
    seen[spike_run_id] = digest
    outcome = REPLACED if current is not None else ACCEPTED
    return IntakeResult(path, outcome, spike_run_id, revision, f"revision {revision.revision}", True)
