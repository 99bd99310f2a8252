"""Intake: inbox entries in, accepted revisions, quarantined files or reported skips out. Shared by sensor and CLI.

Validation is the gate core's; this module decides what a valid file means for the store: a new spike run,
an unchanged duplicate (same id, same sha256: a no-op), or a conflict (same id, different content), which is
quarantined unless the caller asked to replace. One process at a time holds the intake lock, so the sensor and
a manual ``maml-evidence ingest`` never both accept the same spike run.

No inbox entry can stop, hang or flood the others. Every entry gets exactly one result:

- Names count as payloads when they end in ``.json`` in any case; any other entry is *skipped* (left in place).
- Only regular files are opened: the type is taken with ``lstat`` (links are never followed), the file is opened
  with ``O_NOFOLLOW | O_NONBLOCK`` and checked again with ``fstat`` (a FIFO or device swapped in is refused), its
  size is checked before reading, and at most ``MAX_BYTES + 1`` bytes are ever read.
- A rejected inbox entry is *moved* (``rename``: a link moves as a link, nothing is copied) into ``quarantine/``
  beside a ``.reason.txt``. One that cannot be moved, and every skipped name, is remembered by (name, inode,
  mtime, size) in ``.locks/inbox-reported.json`` and reported once; later intakes count it as already reported
  until it changes.
- Files named explicitly (not in the inbox) follow the same rules, but are never moved or copied: a rejection
  leaves only the reason file in quarantine.
- Names are shown, stored (``source_file``) and used in quarantine with undecodable bytes and non-printable
  characters escaped (``printable``), so every result is one line of valid UTF-8.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shlex
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from maml_evidence.gate import PayloadValidationError, parse_payload_text, validate_payload
from maml_evidence.gate.loading import MAX_BYTES
from maml_evidence.store.files import atomic_write_bytes, atomic_write_text, file_lock
from maml_evidence.store.home import EvidenceHome, StoreError, check_spike_run_id
from maml_evidence.store.registry import PayloadRegistry, Revision, sha256_hex

ACCEPTED, REPLACED, UNCHANGED, QUARANTINED, SKIPPED = "accepted", "replaced", "unchanged", "quarantined", "skipped"
PAYLOAD_SUFFIX = ".json"
REASON_SUFFIX = ".reason.txt"
REPORTED_FILE = "inbox-reported.json"
NAME_MAX = 255  # bytes in one file name (Linux, macOS)
_TEMP_NAME_EXTRA = 32  # atomic writes first write ".<name>.<random>.partial" beside the target
_STAMP = "%Y%m%dT%H%M%S%fZ"
_STAMP_PREFIX = re.compile(r"\d{8}T\d{12}Z-")
_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class IntakeResult:
    """What happened to one inbox entry or named file."""

    path: Path
    outcome: str
    spike_run_id: str | None = None
    revision: Revision | None = None
    message: str = ""
    needs_run: bool = False
    quarantined_to: Path | None = None
    shown: str = ""  # the entry as printed: its inbox name, or the path as given; always printable
    reason_file: Path | None = None
    already_reported: bool = False  # skipped, and reported by an earlier intake (unchanged since)
    retry: bool = False  # skipped for now (replaced while opened, an unexpected error): taken again next time

    @property
    def display(self) -> str:
        return self.shown or printable(self.path.name)


def printable(text: str) -> str:
    """``text`` as one line of valid UTF-8: undecodable bytes as ``\\xNN``, other non-printable characters
    (newline, escape, ...) as ``repr`` writes them, backslashes doubled. Printable text comes back unchanged."""
    if text.isprintable() and "\\" not in text:
        return text
    out = []
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, kept by the file system codec
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char == "\\":
            out.append("\\\\")
        elif char.isprintable():
            out.append(char)
        else:
            out.append(repr(char)[1:-1])
    return "".join(out)


def is_payload_name(name: str) -> bool:
    """Which inbox names are payloads: ``*.json`` in any case (``UPPER.JSON`` too)."""
    return name.lower().endswith(PAYLOAD_SUFFIX)


def inbox_entries(home: EvidenceHome) -> list[Path]:
    """Every entry in the inbox, whatever its name or type, in byte order of the names.

    The sensor and ``maml-evidence ingest`` both list the inbox with this, and ``intake_files`` decides per entry.
    """
    try:
        with os.scandir(home.inbox) as listing:
            names = [entry.name for entry in listing]
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StoreError(f"{printable(str(home.inbox))}: cannot list the inbox: {exc.strerror or exc}") from None
    return [home.inbox / name for name in sorted(names, key=os.fsencode)]


def spike_run_id_for(payload: object, path: Path, stem: str | None = None) -> str:
    """The payload's ``spike_run_id`` if present, else the file's stem; validated either way.

    A quarantined file keeps its original stem after the quarantine time stamp: that stem is the id, so
    ``ingest --replace quarantine/<stamp>-<id>.json`` means the same spike run the inbox file meant.
    """
    if isinstance(payload, dict) and "spike_run_id" in payload:
        return check_spike_run_id(payload["spike_run_id"])
    stem = path.stem if stem is None else stem
    try:
        return check_spike_run_id(stem)
    except StoreError as exc:
        raise StoreError(f'{exc} (taken from the file name; set "spike_run_id" in the payload)') from None


def _fit_name(name: str, budget: int) -> str:
    """``name`` cut to ``budget`` UTF-8 bytes, keeping a ``.json`` suffix and marking the cut with ``~``."""
    if len(name.encode("utf-8")) <= budget:
        return name
    suffix = name[-len(PAYLOAD_SUFFIX) :] if is_payload_name(name) else ""
    head = name[: len(name) - len(suffix)]
    while head and len(f"{head}~{suffix}".encode()) > budget:
        head = head[:-1]
    return f"{head}~{suffix}"


def quarantine_target(home: EvidenceHome, path: Path) -> Path:
    """``quarantine/<UTC stamp>-<name>``: the name escaped and cut so that it, its reason file and their temporary
    names while being written all fit in a file name."""
    stamp = datetime.now(UTC).strftime(_STAMP)
    budget = NAME_MAX - _TEMP_NAME_EXTRA - len(stamp) - 1 - len(REASON_SUFFIX)
    return home.quarantine / f"{stamp}-{_fit_name(printable(path.name), budget)}"


def reason_path(target: Path) -> Path:
    """The reason file beside a quarantined entry."""
    return target.with_name(target.name + REASON_SUFFIX)


def _kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO (named pipe)"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return kind
    return "special file"


class _Oversize(Exception):
    def __init__(self, size: int) -> None:
        self.size = size


class _Changed(Exception):
    """The entry was replaced between ``lstat`` and ``open`` (or is no longer a regular file)."""


def _read_regular(path: Path, listed: os.stat_result) -> bytes:
    """The bytes of a regular file: never follows a link, never blocks, never reads more than MAX_BYTES + 1."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (listed.st_dev, listed.st_ino):
            raise _Changed
        if opened.st_size > MAX_BYTES:
            raise _Oversize(opened.st_size)
        chunks, left = [], MAX_BYTES + 1
        while left > 0:
            chunk = os.read(fd, min(left, _READ_CHUNK))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > MAX_BYTES:  # it grew after fstat
        raise _Oversize(len(data))
    return data


class _Reported:
    """Inbox entries reported once and left in place, by name -> (inode, mtime, size); forgotten once changed."""

    def __init__(self, home: EvidenceHome) -> None:
        self.path = home.local_locks / REPORTED_FILE
        self.inbox = home.inbox
        self.dirty = False
        try:
            entries = json.loads(self.path.read_text(encoding="utf-8"))["entries"]
            assert isinstance(entries, dict)
        except FileNotFoundError:
            entries = {}
        except (OSError, ValueError, KeyError, TypeError, AssertionError):
            entries, self.dirty = {}, True  # damaged: report those entries once more, then it is rewritten
        self.entries: dict[str, dict[str, object]] = {}
        for name, entry in entries.items():
            try:
                current = os.lstat(self.inbox / name)
            except OSError:
                self.dirty = True
                continue
            if isinstance(entry, dict) and entry.get("key") == _key(current):
                self.entries[name] = entry
            else:
                self.dirty = True

    def seen(self, name: str, key: list[int]) -> bool:
        entry = self.entries.get(name)
        return entry is not None and entry.get("key") == key

    def remember(self, name: str, key: list[int], reason: str) -> None:
        self.entries[name] = {"key": key, "reason": reason, "reported_at": datetime.now(UTC).isoformat()}
        self.dirty = True

    def save(self) -> None:
        if self.dirty:
            text = json.dumps({"key": "inode, mtime_ns, size", "entries": self.entries}, indent=1, sort_keys=True)
            atomic_write_text(self.path, text)  # json.dumps escapes undecodable names: the file is ASCII


def _key(st: os.stat_result) -> list[int]:
    return [st.st_ino, st.st_mtime_ns, st.st_size]


class _Intake:
    """One intake under the lock: decides, moves and records each entry."""

    def __init__(
        self,
        home: EvidenceHome,
        replace: bool,
        has_partition: Callable[[str], bool],
        accepted_by: str,
    ) -> None:
        self.home = home
        self.registry = PayloadRegistry(home)
        self.replace = replace
        self.has_partition = has_partition
        self.accepted_by = accepted_by
        self.seen: dict[str, str] = {}
        self.reported = _Reported(home)
        self.inbox = os.path.realpath(home.inbox)
        self.quarantine_dir = str(home.quarantine) if home.remote else os.path.realpath(home.quarantine)
        self._parents: dict[str, str] = {}

    def _where(self, path: Path) -> str:
        parent = str(path.parent)
        if parent not in self._parents:
            self._parents[parent] = os.path.realpath(parent)
        return self._parents[parent]

    def take(self, path: Path) -> IntakeResult | None:
        in_inbox = self._where(path) == self.inbox
        shown = printable(path.name if in_inbox else str(path))
        try:
            return self._take(path, in_inbox, shown)
        except Exception as exc:  # noqa: BLE001 - one entry must never stop the others; retried next time
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            message = f"{shown}: not taken in ({type(exc).__name__}: {printable(detail)}); tried again next time"
            return IntakeResult(path, SKIPPED, message=message, shown=shown, retry=True)

    def _take(self, path: Path, in_inbox: bool, shown: str) -> IntakeResult | None:
        full = printable(str(path))
        try:
            listed = os.lstat(path)
        except FileNotFoundError:
            # taken away between listing and reading: nothing to account for; a named file is an error
            return None if in_inbox else IntakeResult(path, SKIPPED, message="no such file or directory", shown=shown)
        except OSError as exc:
            message = f"cannot look at it: {exc.strerror or exc}"
            return IntakeResult(path, SKIPPED, message=message, shown=shown, retry=True)
        key = _key(listed)
        if in_inbox:
            if self.reported.seen(path.name, key):
                entry = self.reported.entries[path.name]
                return IntakeResult(path, SKIPPED, message=str(entry["reason"]), shown=shown, already_reported=True)
            if not is_payload_name(path.name):
                reason = f"not a payload: only names ending in {PAYLOAD_SUFFIX} (any case) are read; left in place"
                self.reported.remember(path.name, key, reason)
                return IntakeResult(path, SKIPPED, message=reason, shown=shown)
        if not stat.S_ISREG(listed.st_mode):
            kind = _kind(listed.st_mode)
            if stat.S_ISLNK(listed.st_mode):
                with contextlib.suppress(OSError):
                    kind += f" to {printable(os.readlink(path))}"
            rule = "links are never followed" if stat.S_ISLNK(listed.st_mode) else "only regular files are read"
            reason = f"{full}: is a {kind}; {rule}"
            if in_inbox:
                return self._reject(path, shown, key, reason)
            return IntakeResult(path, SKIPPED, message=reason, shown=shown)
        try:
            data = _read_regular(path, listed)
        except FileNotFoundError:
            return None if in_inbox else IntakeResult(path, SKIPPED, message="no such file or directory", shown=shown)
        except _Changed:
            reason = f"{full}: replaced while being opened; tried again next time"
            return IntakeResult(path, SKIPPED, message=reason, shown=shown, retry=True)
        except _Oversize as exc:
            reason = f"{full}: file is {exc.size} bytes; payloads larger than {MAX_BYTES} bytes are refused (not read)"
            return self._reject(path, shown, key, reason)
        except OSError as exc:
            reason = f"{full}: cannot read: {exc.strerror or exc}"
            if in_inbox:
                return self._reject(path, shown, key, reason)
            return IntakeResult(path, SKIPPED, message=reason, shown=shown)
        return self._judge(path, shown, key, data, full, in_inbox)

    def _judge(self, path: Path, shown: str, key: list[int], data: bytes, full: str, in_inbox: bool) -> IntakeResult:
        digest = sha256_hex(data)
        stem = None
        if self._where(path) == self.quarantine_dir and _STAMP_PREFIX.match(path.name):
            stem = Path(path.name[_STAMP_PREFIX.match(path.name).end() :]).stem  # type: ignore[union-attr]
        try:
            payload = parse_payload_text(data, full)
            validate_payload(payload, full)
            spike_run_id = spike_run_id_for(payload, path, stem)
        except (PayloadValidationError, StoreError) as exc:
            reason = str(exc) if isinstance(exc, PayloadValidationError) else f"{full}: {exc}"
            return self._reject(path, shown, key, reason, data=data)
        current = self.registry.current(spike_run_id)
        earlier_in_batch = self.seen.get(spike_run_id)
        if current is not None and current.sha256 == digest:
            self.seen[spike_run_id] = digest
            if earlier_in_batch is None and not self.has_partition(spike_run_id):
                message = "already stored; partition re-registered"
                return IntakeResult(path, ACCEPTED, spike_run_id, current, message, True, shown=shown)
            message = f"same content as revision {current.revision}"
            return IntakeResult(path, UNCHANGED, spike_run_id, current, message, shown=shown)
        if current is not None and not self.replace:
            # A file holding an earlier revision (the inbox copy left behind by a --replace) is history, not a conflict.
            superseded = next((r for r in self.registry.history(spike_run_id) if r.sha256 == digest), None)
            if superseded is not None:
                message = f"same content as revision {superseded.revision}, superseded by revision {current.revision}"
                return IntakeResult(path, UNCHANGED, spike_run_id, current, message, shown=shown)
            target = self._target(path) if in_inbox else Path(os.path.abspath(path))
            command = (
                f"maml-evidence ingest --home {shlex.quote(str(self.home.root))} "
                f"--replace {shlex.quote(printable(str(target)))}"
            )
            reason = (
                f"{full}: spike run {spike_run_id!r} already holds different evidence (revision {current.revision}, "
                f"sha256 {current.sha256[:12]}..., from {current.source_file}); "
                f"this file's sha256 is {digest[:12]}.... "
                f"Evidence is never overwritten silently: to supersede it, run `{command}` "
                f"(the earlier revision stays in history), or give this payload a new spike_run_id."
            )
            return self._reject(path, shown, key, reason, data=data, spike_run_id=spike_run_id, target=target)
        revision = self.registry.accept(spike_run_id, data, full, self.accepted_by)
        self.seen[spike_run_id] = digest
        outcome = REPLACED if current is not None else ACCEPTED
        return IntakeResult(path, outcome, spike_run_id, revision, f"revision {revision.revision}", True, shown=shown)

    def _target(self, path: Path) -> Path:
        target = quarantine_target(self.home, path)
        while _exists(target) or _exists(reason_path(target)):
            target = quarantine_target(self.home, path)
        return target

    def _reject(
        self,
        path: Path,
        shown: str,
        key: list[int],
        reason: str,
        *,
        data: bytes | None = None,
        spike_run_id: str | None = None,
        target: Path | None = None,
    ) -> IntakeResult:
        """Quarantine: an inbox entry moves (link, folder or file as it is); a named file only gets the reason."""
        self.home.quarantine.mkdir(parents=True, exist_ok=True)
        in_inbox = self._where(path) == self.inbox
        if not in_inbox:
            note = reason_path(self._target(path))
            self._write_reason(
                note, path, reason, spike_run_id, "left in place (files outside the inbox are not copied)"
            )
            return IntakeResult(path, QUARANTINED, spike_run_id, message=reason, shown=shown, reason_file=note)
        target = target or self._target(path)
        note = reason_path(target)
        self._write_reason(note, path, reason, spike_run_id, printable(str(target)))
        try:
            _move(path, target, data)
        except OSError as exc:
            note.unlink()
            left = f"{reason} (could not be moved to quarantine: {exc.strerror or exc}; left in place, reported once)"
            self.reported.remember(path.name, key, left)
            return IntakeResult(path, SKIPPED, spike_run_id, message=left, shown=shown)
        return IntakeResult(
            path, QUARANTINED, spike_run_id, message=reason, quarantined_to=target, shown=shown, reason_file=note
        )

    def _write_reason(self, note: Path, path: Path, reason: str, spike_run_id: str | None, moved_to: str) -> None:
        write_reason(note, printable(os.path.abspath(path)), reason, spike_run_id, moved_to)


def write_reason(note: Path, source: str, reason: str, spike_run_id: str | None, moved_to: str) -> None:
    """A quarantine reason file: where the evidence came from, when, its spike run, where it went, then why."""
    lines = [f"file: {source}", f"quarantined_at: {datetime.now(UTC).isoformat()}"]
    if spike_run_id:
        lines.append(f"spike_run_id: {spike_run_id}")
    lines.append(f"moved_to: {moved_to}")
    atomic_write_text(note, "\n".join(lines) + f"\n\n{reason}\n")


def _exists(path: Path) -> bool:
    """A name is taken (a dangling link counts: ``lexists``); in a bucket, an object of that name exists."""
    return os.path.lexists(path) if isinstance(path, Path) else path.exists()


def _move(path: Path, target: Path, data: bytes | None) -> None:
    """``rename``: never opens, never follows a link. Across file systems (a bucket is one) only a file already
    read is copied: a link, a folder or an oversized file stays in the inbox."""
    try:
        if not isinstance(target, Path):
            raise OSError(errno.EXDEV, "the quarantine is in object storage: only a file already read is copied")
        os.rename(path, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV or data is None:
            raise
        atomic_write_bytes(target, data)
        try:
            os.unlink(path)
        except OSError:
            target.unlink()
            raise


def intake_files(
    home: EvidenceHome,
    paths: Iterable[Path],
    *,
    replace: bool = False,
    known_partitions: Callable[[], set[str]] | None = None,
    add_partitions: Callable[[list[str]], None] | None = None,
    accepted_by: str = "cli",
) -> list[IntakeResult]:
    """Take each entry in (inbox entries or named files): one result per entry; register new partitions.

    ``known_partitions`` is read inside the lock, so a concurrent intake's partitions are always seen. An inbox
    entry that vanished before it was read gets no result.
    """
    results: list[IntakeResult] = []
    home.ensure()
    with file_lock(home.locks / "intake.lock"):
        known = known_partitions() if known_partitions is not None else None
        has_partition = (lambda _id: True) if known is None else known.__contains__
        intake = _Intake(home, replace, has_partition, accepted_by)
        for path in paths:
            result = intake.take(Path(path))
            if result is not None:
                results.append(result)
        intake.reported.save()
        new_ids = [r.spike_run_id for r in results if r.needs_run and r.spike_run_id]
        if add_partitions is not None and new_ids:
            add_partitions(list(dict.fromkeys(new_ids)))
    return results
