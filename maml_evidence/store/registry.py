"""Stored payload revisions: content-addressed, never overwritten; ``current.json`` points at the one in force."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from maml_evidence.store.files import atomic_write_bytes, atomic_write_text
from maml_evidence.store.home import EvidenceHome, StoreError, check_spike_run_id


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def utf8_text(text: str) -> str:
    """``text`` as valid UTF-8: a file name's undecodable bytes (kept as surrogates by the file system codec)
    become ``\\xNN``; Parquet, JSON and Dagster metadata can then store it."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            return text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(frozen=True)
class Revision:
    """One accepted payload revision of a spike run."""

    spike_run_id: str
    revision: int
    sha256: str
    source_file: str
    accepted_at: str
    accepted_by: str = "cli"

    @property
    def accepted_at_dt(self) -> datetime:
        return datetime.fromisoformat(self.accepted_at)


class PayloadRegistry:
    """``payloads/<spike_run_id>/<sha256>.json`` for every revision, ``current.json`` for the one in force."""

    def __init__(self, home: EvidenceHome) -> None:
        self.home = home

    def folder(self, spike_run_id: str) -> Path:
        return self.home.payloads / check_spike_run_id(spike_run_id)

    def payload_path(self, spike_run_id: str, sha256: str) -> Path:
        return self.folder(spike_run_id) / f"{sha256}.json"

    def history(self, spike_run_id: str) -> list[Revision]:
        """Every revision, oldest first; empty when the spike run is unknown."""
        pointer = self.folder(spike_run_id) / "current.json"
        try:
            data = json.loads(pointer.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise StoreError(f"{pointer}: damaged revision pointer: {exc}") from exc
        return [Revision(**entry) for entry in data["revisions"]]

    def current(self, spike_run_id: str) -> Revision | None:
        history = self.history(spike_run_id)
        return history[-1] if history else None

    def accept(self, spike_run_id: str, data: bytes, source_file: str, accepted_by: str = "cli") -> Revision:
        """Store ``data`` as the spike run's newest revision (the caller decided it may replace).

        ``source_file`` is stored as valid UTF-8 (see ``utf8_text``); intake passes it already escaped.
        """
        history = self.history(spike_run_id)
        digest = sha256_hex(data)
        revision = Revision(
            spike_run_id=spike_run_id,
            revision=(history[-1].revision + 1) if history else 1,
            sha256=digest,
            source_file=utf8_text(source_file),
            accepted_at=datetime.now(UTC).isoformat(),
            accepted_by=accepted_by,
        )
        path = self.payload_path(spike_run_id, digest)
        if not path.exists():
            atomic_write_bytes(path, data)
        entries = [asdict(r) for r in history] + [asdict(revision)]
        atomic_write_text(self.folder(spike_run_id) / "current.json", json.dumps({"revisions": entries}, indent=2))
        return revision

    def read(self, revision: Revision) -> bytes:
        path = self.payload_path(revision.spike_run_id, revision.sha256)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise StoreError(
                f"{path}: stored payload of spike run {revision.spike_run_id!r} is missing: {exc}"
            ) from exc
        if sha256_hex(data) != revision.sha256:
            raise StoreError(
                f"{path}: stored payload of spike run {revision.spike_run_id!r} is damaged (sha256 mismatch)"
            )
        return data

    def known_ids(self) -> list[str]:
        """Spike runs with a revision pointer: one listing (in a bucket one request per 1,000 objects, not one each)."""
        if self.home.remote:
            return sorted({p.parent.name for p in self.home.payloads.glob("*/current.json")})
        if not self.home.payloads.exists():
            return []
        return sorted(p.name for p in self.home.payloads.iterdir() if (p / "current.json").exists())
