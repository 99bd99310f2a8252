"""The evidence home: one folder (or one ``s3://`` prefix, see ``remote.py``) holding everything that must survive
restarts."""

from __future__ import annotations

import os
import re
from pathlib import Path

HOME_ENV = "MAML_EVIDENCE_HOME"
INBOX_ENV = "MAML_EVIDENCE_INBOX"
DEFAULT_HOME = "data"
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class StoreError(Exception):
    """A store problem a user can act on (bad spike run id, damaged file, locked catalog)."""


def is_remote(location: object) -> bool:
    """An ``s3://`` evidence home (object storage, see ``remote.py``) rather than a folder."""
    return str(location).startswith("s3://")


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The evidence home: the argument, else $MAML_EVIDENCE_HOME, else ./data; always absolute.

    An ``s3://bucket/prefix`` home is a path object over the bucket (``remote.root``), not a local ``Path``.
    """
    chosen = home if home is not None else os.environ.get(HOME_ENV) or DEFAULT_HOME
    if is_remote(chosen):
        from maml_evidence.store import remote

        return remote.root(str(chosen))
    return Path(chosen).expanduser().resolve()


def check_spike_run_id(value: object) -> str:
    """Spike run ids become folder names and partition keys: letters, digits, '.', '_', '-' only."""
    if not isinstance(value, str) or not _RUN_ID.fullmatch(value) or ".." in value:
        raise StoreError(
            f"spike_run_id: expected 1-128 letters, digits, '.', '_' or '-' (starting with a letter or digit, "
            f"no '..'), got {value!r}"
        )
    return value


class EvidenceHome:
    """Paths inside the evidence home; ``ensure()`` creates the folders."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = resolve_home(root)
        self.remote = not isinstance(self.root, Path)
        # what a bucket cannot hold (the inbox, the DuckDB catalog, the default Dagster home) stays on this machine
        self.local = self.root
        if self.remote:
            from maml_evidence.store import remote

            self.local = remote.local_folder(str(self.root))

    def __repr__(self) -> str:
        return f"EvidenceHome({str(self.root)!r})"

    @property
    def inbox(self) -> Path:
        """Where dropped payloads wait: ``$MAML_EVIDENCE_INBOX``, else ``inbox`` in the home (or its local folder)."""
        chosen = os.environ.get(INBOX_ENV)
        return Path(chosen).expanduser().resolve() if chosen else self.local / "inbox"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def payloads(self) -> Path:
        return self.root / "payloads"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def tables(self) -> Path:
        return self.root / "tables"

    @property
    def catalog(self) -> Path:
        return self.local / "evidence.duckdb"

    @property
    def dagster_home(self) -> Path:
        return self.local / "dagster_home"

    @property
    def policy_file(self) -> Path:
        return self.root / "thresholds.toml"

    @property
    def policies(self) -> Path:
        return self.root / "policies"

    @property
    def locks(self) -> Path:
        return self.root / ".locks"

    @property
    def local_locks(self) -> Path:
        """This machine's own bookkeeping of its inbox (which entries were reported); the home's for a local home."""
        return self.local / ".locks"

    @property
    def journal(self) -> Path:
        """Commit journals of decision batches being written (see ``store/commit.py``)."""
        return self.root / "journal"

    @property
    def failures(self) -> Path:
        """One file per spike run whose last evaluation failed, holding the reason (removed once it succeeds)."""
        return self.root / "failures"

    def report_dir(self, spike_run_id: str) -> Path:
        return self.reports / check_spike_run_id(spike_run_id)

    def ensure(self) -> EvidenceHome:
        if self.remote:  # a bucket has no folders: only the bucket itself and the local ones are made
            from maml_evidence.store import remote

            remote.ensure_bucket(str(self.root))
            self.local.mkdir(parents=True, exist_ok=True)
            self.inbox.mkdir(parents=True, exist_ok=True)
            return self
        for folder in (
            self.inbox,
            self.quarantine,
            self.payloads,
            self.reports,
            self.tables,
            self.policies,
            self.locks,
            self.journal,
            self.failures,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        return self
