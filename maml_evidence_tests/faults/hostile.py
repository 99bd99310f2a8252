"""Hostile inbox entries (issue 9) and the ways the tests drive and inspect an evidence home holding them.

Entries are made with bytes paths, so names that are not UTF-8 are exactly what a file system can hold. Every
hostile entry sorts before the shipped samples (``0-`` < ``2026-``), so good files come after bad ones.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from maml_evidence_tests.samples import BIN, SAMPLE_DECISIONS, SAMPLE_INBOX

ENABLE = "2026-10-06-support-bots-enable"
SPARSE_BYTES = 8 * 1024**3
LONG_NAME = "0-" + "a" * 228 + ".json"  # 235 characters
PASSWD_LINE = Path("/etc/passwd").read_bytes().splitlines()[0]
STAMPED = re.compile(r"^\d{8}T\d{12}Z-")


def sample_payload(name: str = ENABLE, /, **changes: object) -> dict:
    payload = json.loads((SAMPLE_INBOX / f"{name}.json").read_text(encoding="utf-8"))
    payload.update(changes)
    return payload


def without_id(name: str = ENABLE) -> dict:
    payload = sample_payload(name)
    del payload["spike_run_id"]  # the id comes from the file stem
    return payload


def write_bytes(folder: Path, name: bytes, data: bytes) -> bytes:
    """Create ``folder/name`` through a bytes path (any name a file system can hold); returns the full path."""
    path = os.fsencode(folder) + b"/" + name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    return path


@dataclass(frozen=True)
class Hostile:
    """What the hostile inbox holds and what each entry must come to (names as the command prints them)."""

    quarantined: dict[str, str]  # printed name -> the file type it keeps in quarantine
    skipped: list[str]  # printed names left in place with a reason
    accepted: dict[str, str]  # spike run id -> decision
    inodes: dict[str, int]  # printed name -> inode before intake (moved, not copied)

    @property
    def entries(self) -> int:
        return len(self.quarantined) + len(self.skipped) + len(self.accepted)


def make_hostile_inbox(inbox: Path) -> Hostile:
    """Every hostile entry of issue 9, plus the six samples after them."""
    inbox.mkdir(parents=True, exist_ok=True)
    raw = os.fsencode(inbox) + b"/"
    write_bytes(inbox, LONG_NAME.encode(), b"{}")
    write_bytes(inbox, b"0-bad\xfe.json", b"{}")
    good = sample_payload(ENABLE, spike_run_id="0-non-utf8-name")
    write_bytes(inbox, b"0-good\xfe.json", json.dumps(good).encode())
    os.mkfifo(raw + b"0-fifo.json")
    os.symlink(b"/dev/zero", raw + b"0-zero.json")
    with open(raw + b"0-sparse.json", "wb") as handle:
        handle.truncate(SPARSE_BYTES)  # 8 GB that take no disk space
    os.symlink(b"/etc/passwd", raw + b"0-passwd.json")
    os.mkdir(raw + b"0-dir.json")
    os.symlink(b"/nonexistent/target.json", raw + b"0-dangling.json")
    write_bytes(inbox, b"0-UPPER.JSON", json.dumps(without_id()).encode())
    write_bytes(inbox, b"0-new\nline.json", b"{")
    write_bytes(inbox, b"0-notes.txt", b"not a payload")
    for name in SAMPLE_DECISIONS:
        write_bytes(inbox, f"{name}.json".encode(), (SAMPLE_INBOX / f"{name}.json").read_bytes())
    quarantined = {
        LONG_NAME: "file",
        "0-bad\\xfe.json": "file",
        "0-fifo.json": "fifo",
        "0-zero.json": "link",
        "0-sparse.json": "file",
        "0-passwd.json": "link",
        "0-dir.json": "dir",
        "0-dangling.json": "link",
        "0-new\\nline.json": "file",
    }
    inodes = {
        "0-sparse.json": os.lstat(raw + b"0-sparse.json").st_ino,
        "0-fifo.json": os.lstat(raw + b"0-fifo.json").st_ino,
    }
    accepted = {"0-non-utf8-name": "enable_maml", "0-UPPER": "enable_maml", **SAMPLE_DECISIONS}
    return Hostile(quarantined, ["0-notes.txt"], accepted, inodes)


def file_type(path: bytes | Path) -> str:
    mode = os.lstat(path).st_mode
    for test, name in ((stat.S_ISLNK, "link"), (stat.S_ISDIR, "dir"), (stat.S_ISFIFO, "fifo"), (stat.S_ISREG, "file")):
        if test(mode):
            return name
    return "other"


def printed(name: bytes) -> str:
    """A raw file name as the command prints it."""
    from maml_evidence.store.intake import printable

    return printable(os.fsdecode(name))


def quarantine_layout(home: Path) -> dict[str, str]:
    """Quarantined entries (stamp removed, as printed) -> file type; each must sit beside its reason file."""
    folder = os.fsencode(home / "quarantine")
    names = os.listdir(folder) if os.path.isdir(folder) else []
    out = {}
    for name in names:
        if name.endswith(b".reason.txt"):
            continue
        assert name + b".reason.txt" in names, f"{name!r} has no reason file"
        text = os.fsdecode(name)
        assert STAMPED.match(text), name
        assert len(name) <= 255 and name.decode("utf-8").isprintable(), f"quarantine names are printable: {name!r}"
        out[STAMPED.sub("", text)] = file_type(folder + b"/" + name)
    return out


def inbox_names(home: Path) -> list[str]:
    return sorted(printed(n) for n in os.listdir(os.fsencode(home / "inbox")))


def nothing_copied_from(home: Path, needle: bytes) -> list[str]:
    """Regular files under the home (links not followed) that contain ``needle``."""
    found = []
    for folder, _dirs, files in os.walk(os.fsencode(home)):
        for name in files:
            path = folder + b"/" + name
            if stat.S_ISREG(os.lstat(path).st_mode):
                with open(path, "rb") as handle:
                    if needle in handle.read(1 << 24):
                        found.append(printed(path))
    return found


def cli_env(root: Path) -> dict[str, str]:
    """The environment of a command on ``root/home``: its Dagster instance in ``root/dagster_home``."""
    env = {k: v for k, v in os.environ.items() if k != "MAML_EVIDENCE_HOME"}
    env["DAGSTER_HOME"] = str(root / "dagster_home")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def cli_command(root: Path, *args: str | bytes) -> list[bytes]:
    """``maml-evidence ARGS`` (the console script), with ``--home root/home`` after an ``ingest``."""
    command = [os.fsencode(BIN / "maml-evidence"), *[os.fsencode(a) for a in args]]
    if args and args[0] == "ingest":
        command[2:2] = [b"--home", os.fsencode(root / "home")]
    return command


def maml_evidence(root: Path, *args: str | bytes, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real console script on ``root/home``.

    Output is decoded as strict UTF-8: a name printed raw (not escaped) fails the test. A hang fails it too.
    """
    return subprocess.run(
        cli_command(root, *args),
        capture_output=True,
        encoding="utf-8",
        errors="strict",
        env=cli_env(root),
        cwd=root,
        timeout=timeout,
    )


def lines_by_subject(stdout: str) -> dict[str, str]:
    """The entry (spike run id or printed name) each output line is about -> the line; each at most once."""
    out: dict[str, str] = {}
    for line in stdout.splitlines():
        if line.startswith("skipped (already reported)"):
            out.setdefault("(already reported)", line)
            continue
        subject = line[29:].split("  ", 1)[0]
        assert subject not in out, f"{subject} reported twice:\n{stdout}"
        out[subject] = line
    return out
