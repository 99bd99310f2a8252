"""Charts drawn ahead, in worker processes on the cores the caller leaves idle.

A per-project chart costs about 0.1 s of CPU, and a Dagster run over many spike runs spends most of its time in
Dagster's own bookkeeping, which keeps one core busy. So the first step of a run, which already has every report,
hands the charts to worker processes (``draw_ahead``), and the step that commits the decisions takes the finished
ones (``take``, through ``pictures.write_effects``). Re-evaluation does the same for the reports it rewrites.

A draft is the file ``.<target>.<digest>.draft`` beside its target. The digest is of the report without its
``provenance`` (when and why it was recorded: the only part a chart does not show), so a draft only ever stands
for the report it was drawn from, and only the process that asked for it uses it; any other draft (a run that
died, a decision that changed in between) is removed unused (``clear_leftovers``).

Workers are plain ``python -m maml_evidence.drafts`` processes fed JSON lines on stdin: nothing is forked from
a process holding Dagster's or DuckDB's threads, and no caller's ``__main__`` is imported again (as
``multiprocessing``'s spawn would). A worker runs at a lower priority, so it takes idle CPU, not the caller's;
it exits when its stdin closes, also when the caller is killed. Anything that goes wrong with a worker only
means that chart is drawn in-line.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG = logging.getLogger("maml_evidence")

TIMEOUT_S = 120.0  # waiting for one chart; a worker slower than this is not waited for (the chart is drawn in-line)
MAX_WORKERS = 4
NICENESS = 10


class WorkerLost(RuntimeError):
    """A chart worker exited (killed, out of memory) before answering."""


@dataclass(eq=False)
class _Job:
    report: Mapping[str, Any]
    draft: Path
    future: Future[None] = field(default_factory=Future)
    sent: bool = False  # handed to a worker; until then the caller may take it back and draw it itself


_lock = threading.Condition()
_queue: collections.deque[_Job] = collections.deque()  # first asked, first drawn: the order charts are taken in
_jobs: dict[tuple[str, str], _Job] = {}  # (target path, digest) -> its job, until taken
_workers: list[_Worker] = []


def draw_ahead(charts: Iterable[tuple[Mapping[str, Any], Path]]) -> int:
    """Queue each ``(report, target)`` chart for the worker processes; returns how many were queued.

    Starts workers on all cores but one (at least one). A chart already queued is not queued twice.
    """
    queued = 0
    with _lock:
        for report, target in charts:
            digest = report_digest(report)
            key = (str(target), digest)
            if key not in _jobs:
                job = _Job(report, draft_path(target, digest))
                _jobs[key] = job
                _queue.append(job)
                queued += 1
        _lock.notify_all()
    if queued:
        _start_workers()
    return queued


def take(report: Mapping[str, Any], target: Path) -> bool:
    """Move the finished draft of this very report into place as ``target``; False when there is none.

    A chart no worker has started yet is taken back (False: the caller draws it itself, while the workers go on
    with the next ones), so a caller never waits behind a queue.
    """
    digest = report_digest(report)
    with _lock:
        job = _jobs.pop((str(target), digest), None)
        for key in [k for k in _jobs if k[0] == str(target)]:  # drafts of other reports for this target are stale
            _forget(_jobs.pop(key))
        if job is None:
            return False
        if not job.sent:
            _queue.remove(job)
            return False
    try:
        job.future.result(timeout=TIMEOUT_S)
        if isinstance(target, Path):
            os.replace(job.draft, target)
        else:
            from maml_evidence.store import remote

            try:
                remote.upload(job.draft, target)
            finally:
                job.draft.unlink(missing_ok=True)
        return True
    except Exception:  # noqa: BLE001 - a failed, lost or late draft is drawn in-line, which logs its own error
        LOG.info("draft of %s not used; drawing it in-line", target, exc_info=True)
        _forget(job)
        return False


def _forget(job: _Job) -> None:
    """Nobody will take this draft: remove it from the queue, or remove its file once a worker has written it."""
    if not job.sent:
        with contextlib.suppress(ValueError):
            _queue.remove(job)
        return
    job.future.add_done_callback(lambda _: job.draft.unlink(missing_ok=True))


def clear_leftovers(target: Path) -> None:
    """Remove ``target``'s drafts that nobody here waits for, and what killed writers of them left."""
    if not isinstance(target, Path):
        return  # drafts of objects are local temporary files: nothing of them is ever left in the bucket
    with _lock:
        waited = [digest for where, digest in _jobs if where == str(target)]
    try:
        found = [*target.parent.glob(f".{target.name}.*"), *target.parent.glob(f"..{target.name}.*")]
    except OSError:
        return
    for path in found:
        if not any(digest in path.name for digest in waited):
            with contextlib.suppress(OSError):
                path.unlink()


def report_digest(report: Mapping[str, Any]) -> str:
    """What a chart depends on: the report's content without ``provenance`` (when and why it was recorded)."""
    content = {key: value for key, value in report.items() if key != "provenance"}
    text = json.dumps(content, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def draft_path(target: Path, digest: str) -> Path:
    """Beside the target (one rename puts it in place); for an object in a bucket, in a local temporary folder
    (``take`` sends it with one PUT)."""
    if isinstance(target, Path):
        return target.parent / f".{target.name}.{digest}.draft"
    where = hashlib.sha256(str(target).encode("utf-8")).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "maml-evidence-drafts" / f".{where}.{target.name}.{digest}.draft"


def pending(target: Path | None = None) -> int:
    """Drafts asked for and not yet taken (of ``target`` only, when given); tests read it."""
    with _lock:
        return sum(1 for where, _ in _jobs if target is None or where == str(target))


class _Worker:
    """One ``python -m maml_evidence.drafts`` process and the thread that hands it one chart at a time."""

    def __init__(self) -> None:
        package_root = str(Path(__file__).resolve().parents[1])  # the worker imports this very package
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "maml_evidence.drafts"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
            encoding="utf-8",
        )
        self.alive = True
        self.closing = False
        threading.Thread(target=self._run, name=f"maml-chart-worker-{self.process.pid}", daemon=True).start()

    def close(self) -> None:
        with _lock:
            self.closing = True
            _lock.notify_all()

    def _next(self) -> _Job | None:
        with _lock:
            while not _queue and not self.closing:
                _lock.wait()
            if self.closing:
                return None
            job = _queue.popleft()
            job.sent = True
            return job

    def _run(self) -> None:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        job = None
        try:
            while (job := self._next()) is not None:
                stdin.write(json.dumps({"path": str(job.draft), "report": job.report}, default=str) + "\n")
                stdin.flush()
                line = stdout.readline()
                if not line:
                    break
                error = json.loads(line).get("error")
                job.future.set_result(None) if not error else job.future.set_exception(RuntimeError(str(error)))
                job = None
        except (OSError, ValueError):  # the worker is gone, or answered nonsense
            pass
        finally:
            with _lock:
                self.alive = False
            with contextlib.suppress(OSError, ValueError):
                stdin.close()
            if job is not None and not job.future.done():
                job.future.set_exception(WorkerLost(f"chart worker {self.process.pid} exited: {self.process.wait()}"))


def _start_workers() -> None:
    """Workers on all cores but one (at least one); a dead one is replaced."""
    with _lock:
        _workers[:] = [w for w in _workers if w.alive]
        missing = max(1, min(MAX_WORKERS, (os.cpu_count() or 2) - 1)) - len(_workers)
    for _ in range(missing):
        try:
            worker = _Worker()
        except OSError:  # no process can be started: the queued charts are taken back and drawn in-line
            LOG.info("no chart worker could be started; charts are drawn in-line", exc_info=True)
            return
        with _lock:
            _workers.append(worker)


@atexit.register
def _close_workers() -> None:
    """Close every worker: each finishes the chart it is drawing and exits (nobody waits for it)."""
    with _lock:
        workers = list(_workers)
        _workers.clear()
    for worker in workers:
        worker.close()


def _serve() -> int:
    """The worker: one JSON request per stdin line, one answer per stdout line, until stdin closes."""
    with contextlib.suppress(OSError):
        os.nice(NICENESS)  # idle CPU only: the process that asked keeps its core
    from maml_evidence.pictures import render_effects
    from maml_evidence.store.files import atomic_write_bytes

    for line in sys.stdin:
        try:
            request = json.loads(line)
            atomic_write_bytes(Path(request["path"]), render_effects(request["report"]))
            answer: dict[str, object] = {}
        except Exception as exc:  # noqa: BLE001 - every failure is answered; the caller draws that chart itself
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_serve())
