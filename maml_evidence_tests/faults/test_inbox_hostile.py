"""Issue 9: one inbox entry must never stop the inbox. Through the real `maml-evidence ingest` command.

One evidence home holds every hostile entry (a 235-character name, names that are not UTF-8 or hold a newline,
a FIFO, links to /dev/zero, /etc/passwd and nowhere, an 8 GB sparse file, a directory, UPPER.JSON, a .txt file)
sorted before the six good samples; it is ingested twice, and each test reads what those two ingests did.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from maml_evidence.store import EvidenceStore
from maml_evidence_tests.faults.hostile import (
    ENABLE,
    LONG_NAME,
    PASSWD_LINE,
    SAMPLE_INBOX,
    SPARSE_BYTES,
    Hostile,
    cli_env,
    file_type,
    inbox_names,
    lines_by_subject,
    make_hostile_inbox,
    maml_evidence,
    nothing_copied_from,
    quarantine_layout,
    sample_payload,
    without_id,
    write_bytes,
)


@dataclass
class Ingested:
    root: Path
    hostile: Hostile
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str]
    max_child_rss_kib: int

    @property
    def home(self) -> Path:
        return self.root / "home"


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Ingested:
    root = tmp_path_factory.mktemp("hostile")
    hostile = make_hostile_inbox(root / "home" / "inbox")
    first = maml_evidence(root, "ingest", timeout=120)  # a FIFO that blocked would fail here, not hang CI
    second = maml_evidence(root, "ingest", timeout=120)
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return Ingested(root, hostile, first, second, rss)


def test_every_entry_gets_exactly_one_printable_line(ingested: Ingested) -> None:
    result = ingested.first
    assert "Traceback" not in result.stderr, result.stderr
    lines = lines_by_subject(result.stdout)
    assert len(result.stdout.splitlines()) == ingested.hostile.entries, result.stdout
    for name in ingested.hostile.quarantined:
        assert lines[name].startswith("QUARANTINED"), lines[name]
    for name in ingested.hostile.skipped:
        assert lines[name].startswith("skipped"), lines[name]
    for run_id, decision in ingested.hostile.accepted.items():
        assert lines[run_id].startswith(decision) and "(accepted: revision 1)" in lines[run_id]
    assert result.returncode == 1  # something was quarantined


def test_good_files_after_hostile_entries_are_accepted_and_evaluated(ingested: Ingested) -> None:
    decisions = {k: v["decision"] for k, v in EvidenceStore(ingested.home).decisions().items()}
    assert decisions == ingested.hostile.accepted
    remaining = sorted([*(f"{i}.json" for i in ingested.hostile.accepted if i.startswith("2026")), "0-notes.txt"])
    assert inbox_names(ingested.home) == sorted([*remaining, "0-UPPER.JSON", "0-good\\xfe.json"])


def test_each_rejected_entry_is_moved_as_it_is_into_quarantine_with_a_reason(ingested: Ingested) -> None:
    layout = quarantine_layout(ingested.home)
    long_ones = [name for name in layout if name.startswith("0-aaaa")]
    assert len(long_ones) == 1 and long_ones[0].endswith("~.json")  # cut to fit beside ".reason.txt"
    layout[LONG_NAME] = layout.pop(long_ones[0])
    assert layout == ingested.hostile.quarantined
    folder = ingested.home / "quarantine"
    for name, inode in ingested.hostile.inodes.items():  # renamed, never copied (nor read: see the RSS test)
        [moved] = [p for p in folder.iterdir() if p.name.endswith(f"-{name}")]
        assert os.lstat(moved).st_ino == inode
    reasons = {p.name: p.read_text(encoding="utf-8") for p in folder.glob("*.reason.txt")}
    by_name = {n.split("-", 1)[1].removesuffix(".reason.txt"): text for n, text in reasons.items()}
    assert "is a FIFO" in by_name["0-fifo.json"]
    assert "symbolic link to /dev/zero" in by_name["0-zero.json"]
    assert "symbolic link to /etc/passwd" in by_name["0-passwd.json"]
    assert "symbolic link to /nonexistent/target.json" in by_name["0-dangling.json"]
    assert "is a directory" in by_name["0-dir.json"]
    assert f"file is {SPARSE_BYTES} bytes" in by_name["0-sparse.json"] and "(not read)" in by_name["0-sparse.json"]
    assert "invalid JSON" in by_name["0-new\\nline.json"]
    assert "0-bad\\xfe.json" in by_name["0-bad\\xfe.json"]


def test_the_link_to_etc_passwd_brings_nothing_of_it_into_the_home(ingested: Ingested) -> None:
    assert nothing_copied_from(ingested.home, PASSWD_LINE) == []
    [link] = [p for p in (ingested.home / "quarantine").iterdir() if p.name.endswith("-0-passwd.json")]
    assert file_type(link) == "link"


def test_oversized_entries_are_never_read(ingested: Ingested) -> None:
    # /dev/zero behind a link and the 8 GB sparse file: neither is read, so no child grew anywhere near that
    assert ingested.max_child_rss_kib < 1_500_000, ingested.max_child_rss_kib


def test_a_name_that_is_not_utf8_is_stored_escaped_as_source_file(ingested: Ingested) -> None:
    store = EvidenceStore(ingested.home)
    [revision] = store.registry.history("0-non-utf8-name")
    assert revision.source_file == str(ingested.home / "inbox" / "0-good\\xfe.json")
    connection = store.connect()
    try:
        [(source,)] = connection.execute(
            "SELECT source_file FROM spike_runs WHERE spike_run_id = '0-non-utf8-name'"
        ).fetchall()
    finally:
        connection.close()
    assert source.endswith("/0-good\\xfe.json")


def test_second_ingest_reports_nothing_new_and_exits_0(ingested: Ingested) -> None:
    result = ingested.second
    assert result.returncode == 0, result.stdout + result.stderr
    lines = lines_by_subject(result.stdout)
    assert "QUARANTINED" not in result.stdout and "0-notes.txt" not in result.stdout
    assert lines.pop("(already reported)").split()[3:5] == ["1", "inbox"]
    assert sorted(lines) == sorted(ingested.hostile.accepted)
    assert all("(unchanged: same content as revision 1)" in line for line in lines.values())
    state = json.loads((ingested.home / ".locks" / "inbox-reported.json").read_text(encoding="utf-8"))
    assert list(state["entries"]) == ["0-notes.txt"]


def test_paths_named_on_the_command_line_follow_the_same_rules(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.mkfifo(outside / "pipe.json")
    os.symlink("/etc/passwd", outside / "link.json")
    invalid = outside / "invalid.json"
    invalid.write_text("{", encoding="utf-8")
    good = Path(shutil.copy(SAMPLE_INBOX / f"{ENABLE}.json", outside))
    named = [str(outside / "pipe.json"), "/dev/zero", str(outside / "missing.json"), str(outside / "link.json")]

    result = maml_evidence(tmp_path, "ingest", *named, str(invalid), str(good), timeout=60)
    assert "Traceback" not in result.stderr, result.stderr
    lines = lines_by_subject(result.stdout)
    assert len(result.stdout.splitlines()) == 6, result.stdout
    assert "is a FIFO" in lines[named[0]] and lines[named[0]].startswith("skipped")
    assert "is a character device" in lines["/dev/zero"]
    assert "no such file or directory" in lines[named[2]]
    assert "symbolic link to /etc/passwd" in lines[named[3]]
    assert lines[str(invalid)].startswith("QUARANTINED") and "invalid JSON" in lines[str(invalid)]
    assert lines[ENABLE].startswith("enable_maml")
    assert result.returncode == 1
    # nothing from outside is moved or copied: the rejected file gets only its reason in quarantine
    assert invalid.exists() and (outside / "pipe.json").exists()
    home = tmp_path / "home"
    assert [p.name.split("-", 1)[1] for p in (home / "quarantine").iterdir()] == ["invalid.json.reason.txt"]
    assert nothing_copied_from(home, PASSWD_LINE) == []


def test_the_printed_replace_command_works_verbatim_for_an_id_taken_from_the_file_name(tmp_path: Path) -> None:
    inbox = tmp_path / "home" / "inbox"
    inbox.mkdir(parents=True)
    (inbox / "stem-run.json").write_text(json.dumps(without_id()), encoding="utf-8")
    assert maml_evidence(tmp_path, "ingest").returncode == 0
    changed = without_id()
    changed["candidate"]["meta_train_minutes"] = 500.0  # MAML now costs far more than the budget
    (inbox / "stem-run.json").write_text(json.dumps(changed), encoding="utf-8")

    refused = maml_evidence(tmp_path, "ingest")
    assert refused.returncode == 1 and "QUARANTINED" in refused.stdout
    [command] = [part for part in refused.stdout.split("`") if part.startswith("maml-evidence ingest")]
    [reason] = (tmp_path / "home" / "quarantine").glob("*.reason.txt")
    assert f"`{command}`" in reason.read_text(encoding="utf-8")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    replaced = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, env=cli_env(tmp_path), cwd=elsewhere, timeout=120
    )
    assert replaced.returncode == 0, replaced.stdout + replaced.stderr
    assert replaced.stdout.startswith("defer_maml_cost_too_high     stem-run  (replaced: revision 2)")
    store = EvidenceStore(tmp_path / "home")
    assert store.registry.known_ids() == ["stem-run"]  # no new, time-stamped spike run
    assert [r.revision for r in store.registry.history("stem-run")] == [1, 2]
    assert store.decisions()["stem-run"]["decision"] == "defer_maml_cost_too_high"


@pytest.mark.skipif(
    not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == os.stat("/tmp").st_dev,
    reason="needs /dev/shm on another file system than the temporary folder",
)
def test_entries_that_cannot_be_moved_are_reported_once_until_they_change(tmp_path: Path) -> None:
    shm = Path(os.environ.get("MAML_TEST_SHM", "/dev/shm")) / f"maml-inbox-{os.getpid()}-{tmp_path.name}"
    shm.mkdir()
    try:
        (tmp_path / "home").mkdir()
        os.symlink(shm, tmp_path / "home" / "inbox")  # the inbox on another file system: rename gives EXDEV
        os.mkfifo(shm / "0-fifo.json")
        os.symlink("/etc/passwd", shm / "0-link.json")
        write_bytes(shm, b"0-bad\xfe.json", b"{")  # a regular file already read: copied across, then removed
        (shm / f"{ENABLE}.json").write_text(json.dumps(sample_payload()), encoding="utf-8")

        first = maml_evidence(tmp_path, "ingest", timeout=60)
        lines = lines_by_subject(first.stdout)
        assert first.returncode == 1, first.stdout + first.stderr
        for name in ("0-fifo.json", "0-link.json"):
            assert lines[name].startswith("skipped") and "could not be moved to quarantine" in lines[name]
        assert lines["0-bad\\xfe.json"].startswith("QUARANTINED")
        assert lines[ENABLE].startswith("enable_maml")
        assert quarantine_layout(tmp_path / "home") == {"0-bad\\xfe.json": "file"}
        assert not os.path.lexists(os.fsencode(shm) + b"/0-bad\xfe.json")
        assert nothing_copied_from(tmp_path / "home", PASSWD_LINE) == []

        second = maml_evidence(tmp_path, "ingest", timeout=60)
        assert second.returncode == 0, second.stdout + second.stderr
        lines = lines_by_subject(second.stdout)
        assert lines["(already reported)"].split()[3] == "2"
        assert sorted(lines) == ["(already reported)", ENABLE]

        os.utime(shm / "0-fifo.json", ns=(1, 1))  # changed: reported again, once
        third = maml_evidence(tmp_path, "ingest", timeout=60)
        lines = lines_by_subject(third.stdout)
        assert lines["0-fifo.json"].startswith("skipped") and lines["(already reported)"].split()[3] == "1"
    finally:
        shutil.rmtree(shm, ignore_errors=True)
