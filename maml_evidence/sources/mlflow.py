"""Spike payloads assembled from MLflow runs, and decisions written back onto them.

Conventions (README "Spike evidence from MLflow"): runs of one experiment, told apart by tags. The spike's parent
run is tagged ``maml_evidence.role=spike`` and ``maml_evidence.spike_run_id=<id>``; ``maml_evidence.complete=true``
marks it ready. Its other runs carry the same ``maml_evidence.spike_run_id``, an ``maml_evidence.arm`` (baseline,
candidate) and a ``maml_evidence.stage`` (adaptation by default, train, meta_train); adaptation runs name their
``maml_evidence.project`` (and ``maml_evidence.seed`` for replicates), their ``target_accuracy`` (param or tag) and
log the accuracy metric with ``step``.

This module only reads runs and turns them into the payload's plain JSON; the gate validates and judges it.
MLflow is an optional extra: it is imported inside these functions, never by the gate commands.
"""

from __future__ import annotations

import json
import math
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from maml_evidence.gate import PayloadValidationError, validate_payload
from maml_evidence.gate.thresholds import COST_PROFILE_KEYS, NULLABLE_KEYS, THRESHOLD_KEYS
from maml_evidence.sources.provenance import run_url
from maml_evidence.store.home import StoreError, check_spike_run_id

PREFIX = "maml_evidence."
ROLE_TAG, COMPLETE_TAG, SPIKE_TAG = f"{PREFIX}role", f"{PREFIX}complete", f"{PREFIX}spike_run_id"
ARM_TAG, STAGE_TAG, LABEL_TAG = f"{PREFIX}arm", f"{PREFIX}stage", f"{PREFIX}label"
PROJECT_TAG, SEED_TAG = f"{PREFIX}project", f"{PREFIX}seed"
SPIKE_ROLE = "spike"
ARMS = ("baseline", "candidate")
ADAPTATION, TRAIN, META_TRAIN = "adaptation", "train", "meta_train"
STAGES = (ADAPTATION, TRAIN, META_TRAIN)
TARGET_KEY = "target_accuracy"
TRAIN_MINUTES_METRIC, META_TRAIN_MINUTES_METRIC = "train_minutes", "meta_train_minutes"
DEFAULT_ACCURACY_METRIC = "val_accuracy"
# Written back onto the spike's parent run once its decision is stored.
DECISION_TAG, FAILED_CHECK_TAG, GRADE_TAG = f"{PREFIX}decision", f"{PREFIX}failed_check", f"{PREFIX}evidence_grade"
POLICY_TAG, REPORT_TAG = f"{PREFIX}policy_version", f"{PREFIX}report_path"
INSTALL_HINT = 'MLflow is not installed: install the optional extra with `pip install -e ".[mlflow]"`'
HEALTH_TIMEOUT_SECONDS = 10.0

# Outcomes of one spike, as `collect` prints them.
WRITTEN, STORED, NOT_READY, FAILED = "written", "skipped (already stored)", "skipped (not ready)", "error"


class MlflowMissing(Exception):
    """The optional mlflow extra is not installed."""


class TrackingUnreachable(Exception):
    """The tracking server does not answer: nothing is collected, nothing is written."""


class SourceError(Exception):
    """A problem with the request as a whole (no such experiment): nothing is collected."""


class SpikeError(Exception):
    """One spike cannot be assembled; the message names every MLflow run at fault."""

    def __init__(self, spike: str, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        lines = [f"{spike}: cannot assemble a payload ({count} problem{'s' if count != 1 else ''}):"]
        lines.extend(f"  - {problem}" for problem in self.problems)
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class Collected:
    """What became of one spike: its payload (when assembled), or why not; ``notes`` never stop it."""

    spike_run_id: str
    parent_run_id: str
    outcome: str
    payload: dict[str, object] | None = None
    error: str = ""
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class WriteBack:
    """The decision tags set on one spike's parent run (empty when they were already there)."""

    spike_run_id: str
    parent_run_id: str
    tags: dict[str, str] = field(default_factory=dict)


def import_mlflow() -> Any:
    """The ``mlflow`` module, or ``MlflowMissing`` saying how to install it."""
    try:
        import mlflow
    except ImportError:
        raise MlflowMissing(INSTALL_HINT) from None
    return mlflow


def describe(run: Any) -> str:
    """A run as errors name it: its id, its name, and its maml_evidence tags."""
    tags = {k: v for k, v in sorted(run.data.tags.items()) if k.startswith(PREFIX)}
    shown = ", ".join(f"{k}={v}" for k, v in tags.items()) or "no maml_evidence tags"
    name = f" {run.info.run_name!r}" if getattr(run.info, "run_name", None) else ""
    return f"MLflow run {run.info.run_id}{name} ({shown})"


def _number(text: object) -> float | None:
    try:
        value = float(str(text))
    except ValueError:
        return None
    return value


def _setting(key: str, text: str) -> object:
    """A parent-run param as the payload's JSON value: numbers, true/false, null; anything else as given.

    The gate validates the value (and names ``thresholds.<key>``); an unreadable one stays text so it does.
    """
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if key in NULLABLE_KEYS and lowered in ("null", "none", ""):
        return None
    value = _number(text)
    if value is None:
        return text
    return int(value) if value.is_integer() and math.isfinite(value) else value


class MlflowSource:
    """One experiment on one tracking server, read through MLflow's client."""

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        accuracy_metric: str = DEFAULT_ACCURACY_METRIC,
        *,
        allow_unmatched_projects: bool = False,
        client: Any = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.accuracy_metric = accuracy_metric
        # A project logged in one arm only is most often a run that failed or was never tagged: an error naming
        # its runs, unless asked to judge the common projects only (as the gate does with a hand-written payload)
        self.allow_unmatched_projects = allow_unmatched_projects
        if client is None:
            mlflow = import_mlflow()  # first: a missing extra is said as such, whatever the server's state
            check_reachable(tracking_uri)
            client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        self.client = client
        found = self._call(partial(client.get_experiment_by_name, experiment))
        if found is None:
            raise SourceError(f"experiment {experiment!r} not found on {tracking_uri}")
        self.experiment_name = experiment
        self.experiment_id = str(found.experiment_id)

    def _call(self, call: Callable[[], Any]) -> Any:
        """One client call; a connection failure becomes ``TrackingUnreachable``."""
        mlflow = import_mlflow()
        stopped = f"MLflow tracking server {self.tracking_uri} stopped answering"
        try:
            return call()
        except mlflow.exceptions.MlflowException as exc:
            if _is_connection_failure(exc):
                raise TrackingUnreachable(f"{stopped}: {exc}") from exc
            raise
        except OSError as exc:
            raise TrackingUnreachable(f"{stopped}: {exc}") from exc

    def _search(self, filter_string: str) -> list[Any]:
        runs: list[Any] = []
        token = None
        while True:
            page = self._call(
                partial(
                    self.client.search_runs,
                    [self.experiment_id],
                    filter_string=filter_string,
                    max_results=1000,
                    page_token=token,
                )
            )
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def parents(self) -> list[Any]:
        """Every spike parent run of the experiment (ready or not), oldest first."""
        runs = self._search(f"tags.`{ROLE_TAG}` = '{SPIKE_ROLE}'")
        return sorted(runs, key=lambda run: (run.info.start_time or 0, run.info.run_id))

    def collect(
        self, spike_run_ids: Sequence[str] | None = None, stored: Callable[[str], bool] = lambda _id: False
    ) -> list[Collected]:
        """One result per spike: every ready one not ``stored``, or exactly the ids given (stored or not).

        Everything is read before anything is returned, so a server that stops answering midway leaves the caller
        with nothing to write (``TrackingUnreachable``).
        """
        by_id: dict[str, list[Any]] = {}
        results: list[Collected] = []
        for parent in self.parents():
            sid = parent.data.tags.get(SPIKE_TAG)
            try:
                by_id.setdefault(check_spike_run_id(sid), []).append(parent)
            except StoreError as exc:
                problem = f"{describe(parent)}: tag {SPIKE_TAG} {exc.args[0].removeprefix('spike_run_id: ')}"
                if spike_run_ids is None and _ready(parent):
                    results.append(Collected(str(sid), parent.info.run_id, FAILED, error=problem))
        wanted = list(dict.fromkeys(spike_run_ids)) if spike_run_ids is not None else list(by_id)
        for sid in wanted:
            found = by_id.get(sid, [])
            if not found:
                error = (
                    f"spike {sid}: no run of experiment {self.experiment_name!r} (id {self.experiment_id}) is tagged "
                    f"{ROLE_TAG}={SPIKE_ROLE} and {SPIKE_TAG}={sid}"
                )
                results.append(Collected(sid, "", FAILED, error=error))
                continue
            if len(found) > 1:
                names = "; ".join(describe(run) for run in found)
                error = f"spike {sid}: {len(found)} parent runs claim it, expected one: {names}"
                results.append(Collected(sid, found[0].info.run_id, FAILED, error=error))
                continue
            parent = found[0]
            if not _ready(parent):
                why = f"{describe(parent)} is not tagged {COMPLETE_TAG}=true (still training?)"
                if spike_run_ids is not None:
                    results.append(Collected(sid, parent.info.run_id, FAILED, error=f"spike {sid}: {why}"))
                else:
                    results.append(Collected(sid, parent.info.run_id, NOT_READY, error=why))
                continue
            if spike_run_ids is None and stored(sid):
                results.append(Collected(sid, parent.info.run_id, STORED))
                continue
            try:
                payload, notes = self.assemble(sid, parent)
            except SpikeError as exc:
                results.append(Collected(sid, parent.info.run_id, FAILED, error=str(exc)))
                continue
            results.append(Collected(sid, parent.info.run_id, WRITTEN, payload, notes=tuple(notes)))
        return results

    def assemble(self, spike_run_id: str, parent: Any) -> tuple[dict[str, object], list[str]]:
        """The spike's payload, validated by the gate, and notes (projects in one arm only, named with their runs,
        where ``allow_unmatched_projects`` lets them through; otherwise each is a problem).

        Raises ``SpikeError`` naming every run at fault.
        """
        label = f"spike {spike_run_id} (parent {describe(parent)})"
        problems: list[str] = []
        runs = [
            run
            for run in self._search(f"tags.`{SPIKE_TAG}` = '{spike_run_id}'")
            if run.info.run_id != parent.info.run_id and run.data.tags.get(ROLE_TAG) != SPIKE_ROLE
        ]
        grouped: dict[str, dict[str, list[Any]]] = {arm: {stage: [] for stage in STAGES} for arm in ARMS}
        for run in sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id)):
            tags = run.data.tags
            arm, stage = tags.get(ARM_TAG), tags.get(STAGE_TAG, ADAPTATION)
            if arm not in ARMS:
                problems.append(f"{describe(run)}: tag {ARM_TAG} must be baseline or candidate, got {arm!r}")
            elif stage not in STAGES:
                problems.append(f"{describe(run)}: tag {STAGE_TAG} must be one of {', '.join(STAGES)}, got {stage!r}")
            else:
                grouped[arm][stage].append(run)
        payload: dict[str, object] = {"spike_run_id": spike_run_id}
        provenance: dict[str, object] = {}
        arms_provenance: dict[str, object] = {}
        origin: dict[str, str] = {}  # JSON path -> the run behind it, for the gate's messages
        for arm in ARMS:
            stages = grouped[arm]
            if not any(stages.values()):
                problems.append(f"arm {arm} has no runs: tag its runs {SPIKE_TAG}={spike_run_id}, {ARM_TAG}={arm}")
                continue
            built, arm_provenance = self._arm(arm, stages, problems, origin)
            payload[arm] = built
            arms_provenance[arm] = arm_provenance
        for key, section in (("thresholds", THRESHOLD_KEYS), ("cost_profile", COST_PROFILE_KEYS)):
            values = {k: _setting(k, v) for k, v in sorted(parent.data.params.items()) if k in section}
            if values:
                payload[key] = values
                origin[key] = describe(parent)
        if "score_scale" in parent.data.params:
            payload["score_scale"] = parent.data.params["score_scale"]
            origin["score_scale"] = describe(parent)
        notes = self._one_arm_notes(arms_provenance)
        if notes and not self.allow_unmatched_projects:
            problems.extend(f"{note} (collect with --allow-unmatched-projects to judge them so)" for note in notes)
        if problems:
            raise SpikeError(label, problems)
        provenance = {
            "tracking_uri": self.tracking_uri,
            "experiment_id": self.experiment_id,
            "experiment_name": self.experiment_name,
            "parent_run_id": parent.info.run_id,
            "parent_run_url": run_url(self.tracking_uri, self.experiment_id, parent.info.run_id),
            "accuracy_metric": self.accuracy_metric,
            "arms": arms_provenance,
        }
        payload["source"] = {"mlflow": provenance}
        try:
            validate_payload(json.loads(json.dumps(payload)), f"MLflow spike {spike_run_id}")
        except PayloadValidationError as exc:
            raise SpikeError(label, [_at_run(str(problem), problem.path, origin) for problem in exc.problems]) from None
        except ValueError as exc:  # json refuses NaN only if asked; kept for values json cannot hold
            raise SpikeError(label, [str(exc)]) from None
        return payload, notes

    def _arm(
        self, arm: str, stages: Mapping[str, list[Any]], problems: list[str], origin: dict[str, str]
    ) -> tuple[dict[str, object], dict[str, object]]:
        """One arm's payload object and its provenance (the run ids behind it)."""
        built: dict[str, object] = {}
        labels = {run.data.tags[LABEL_TAG] for runs in stages.values() for run in runs if LABEL_TAG in run.data.tags}
        if len(labels) > 1:
            problems.append(f"arm {arm}: its runs give different {LABEL_TAG} tags: {', '.join(sorted(labels))}")
        elif labels:
            built["label"] = labels.pop()
        by_project: dict[str, list[Any]] = {}
        for run in stages[ADAPTATION]:
            project = run.data.tags.get(PROJECT_TAG, "").strip()
            if not project:
                problems.append(f"{describe(run)}: an adaptation run needs the tag {PROJECT_TAG}")
                continue
            by_project.setdefault(project, []).append(run)
        entries: list[dict[str, object]] = []
        projects: dict[str, list[str]] = {}
        for project, runs in sorted(by_project.items()):  # by name: the same payload however the runs were timed
            entry = self._project(project, runs, problems)
            if entry is not None:
                origin[f"{arm}.per_project_adaptation[{len(entries)}]"] = "; ".join(describe(r) for r in runs)
                entries.append(entry)
            projects[project] = [run.info.run_id for run in runs]
        built["per_project_adaptation"] = entries
        provenance: dict[str, object] = {"train_run_id": None, "meta_train_run_id": None, "projects": projects}
        for stage, key in ((TRAIN, "train_minutes"), (META_TRAIN, "meta_train_minutes")):
            runs = stages[stage]
            if stage == META_TRAIN and runs and arm != "candidate":
                problems.extend(f"{describe(r)}: meta-training belongs to the candidate arm" for r in runs)
                continue
            if not runs:
                if stage == TRAIN:
                    problems.append(f"arm {arm} has no train run: tag one run {ARM_TAG}={arm}, {STAGE_TAG}={TRAIN}")
                continue
            if len(runs) > 1:
                names = "; ".join(describe(r) for r in runs)
                problems.append(f"arm {arm} has {len(runs)} {stage} runs, expected one: {names}")
                continue
            minutes = self._minutes(runs[0], stage, problems)
            if minutes is not None:
                built[key] = minutes
                origin[f"{arm}.{key}"] = describe(runs[0])
            provenance[f"{stage}_run_id"] = runs[0].info.run_id
        return built, provenance

    def _project(self, project: str, runs: list[Any], problems: list[str]) -> dict[str, object] | None:
        """One project entry: the curve's steps to target and last value; several seeds give replicates."""
        seeds: list[int | None] = []
        curves: list[tuple[float, float, bool] | None] = []
        targets: set[float] = set()
        for run in runs:
            seed_text = run.data.tags.get(SEED_TAG)
            seed: int | None = None
            if seed_text is not None:
                try:
                    seed = int(seed_text)
                except ValueError:
                    problems.append(f"{describe(run)}: tag {SEED_TAG} must be a whole number, got {seed_text!r}")
            seeds.append(seed)
            target = self._target(run, problems)
            if target is None:
                curves.append(None)
                continue
            targets.add(target)
            curves.append(self._curve(run, target, problems))
        if len(runs) > 1 and any(seed is None for seed in seeds):
            names = "; ".join(describe(r) for r in runs)
            problems.append(
                f"project {project} has {len(runs)} adaptation runs in one arm; seed replicates each need a "
                f"distinct {SEED_TAG} tag: {names}"
            )
            return None
        if len(targets) > 1:
            names = "; ".join(describe(r) for r in runs)
            problems.append(f"project {project}: its seed runs give different {TARGET_KEY} values: {names}")
            return None
        if any(curve is None for curve in curves) or not targets:
            return None
        entry: dict[str, object] = {"project": project, TARGET_KEY: targets.pop()}
        if len(runs) == 1:
            steps, final, reached = curves[0]  # type: ignore[misc]
            entry.update(steps_to_target=steps, final_accuracy=final)
            if not reached:
                entry["reached_target"] = False
            return entry
        replicates = []
        for seed, curve in sorted(zip(seeds, curves, strict=True), key=lambda pair: pair[0] or 0):
            steps, final, reached = curve  # type: ignore[misc]
            replicate: dict[str, object] = {"seed": seed, "steps_to_target": steps, "final_accuracy": final}
            if not reached:
                replicate["reached_target"] = False
            replicates.append(replicate)
        entry["replicates"] = replicates
        return entry

    def _target(self, run: Any, problems: list[str]) -> float | None:
        raw = run.data.params.get(TARGET_KEY, run.data.tags.get(TARGET_KEY))
        if raw is None:
            problems.append(f"{describe(run)}: no target: log the param (or tag) {TARGET_KEY}")
            return None
        value = _number(raw)
        if value is None or not _finite(value):
            problems.append(f"{describe(run)}: {TARGET_KEY} must be a finite number, got {raw!r}")
            return None
        return value

    def _curve(self, run: Any, target: float, problems: list[str]) -> tuple[float, float, bool] | None:
        """(steps to target, final accuracy, reached) from the run's metric history, in step order."""
        history = self._call(partial(self.client.get_metric_history, run.info.run_id, self.accuracy_metric))
        if not history:
            problems.append(
                f"{describe(run)}: metric {self.accuracy_metric!r} has no history (log it with step=...; "
                f"is --accuracy-metric right?)"
            )
            return None
        points = sorted(history, key=lambda m: (m.step, m.timestamp))
        bad = [m for m in points if not _finite(m.value)]
        if bad:
            shown = ", ".join(f"step {m.step}: {_shown(m.value)}" for m in bad[:3])
            problems.append(f"{describe(run)}: metric {self.accuracy_metric!r} has non-finite values ({shown})")
            return None
        final = points[-1].value
        first = next((m for m in points if m.value >= target), None)
        if first is None:
            return float(points[-1].step), final, False
        return float(first.step), final, True

    def _minutes(self, run: Any, stage: str, problems: list[str]) -> float | None:
        """The metric ``train_minutes`` as logged (its last value; a meta_train run may log ``meta_train_minutes``
        instead), else the run's duration (end - start) in minutes."""
        keys = (TRAIN_MINUTES_METRIC,) if stage == TRAIN else (META_TRAIN_MINUTES_METRIC, TRAIN_MINUTES_METRIC)
        for key in keys:
            history = self._call(partial(self.client.get_metric_history, run.info.run_id, key))
            if history:
                value = sorted(history, key=lambda m: (m.step, m.timestamp))[-1].value
                if not _finite(value):
                    problems.append(
                        f"{describe(run)}: metric {key!r} is {_shown(value)}, expected a finite number of minutes"
                    )
                    return None
                return float(value)
        start, end = run.info.start_time, run.info.end_time
        if start is None or end is None:
            problems.append(
                f"{describe(run)}: no metric {TRAIN_MINUTES_METRIC!r} and no end time (still running?): "
                "log train_minutes or end the run"
            )
            return None
        return (end - start) / 60000.0

    @staticmethod
    def _one_arm_notes(arms: Mapping[str, object]) -> list[str]:
        """Projects in one arm only: allowed (the gate lists them in project_alignment), said with their runs."""
        projects = {arm: dict(p.get("projects", {})) for arm, p in arms.items() if isinstance(p, dict)}
        notes = []
        for arm, other in (("baseline", "candidate"), ("candidate", "baseline")):
            for project, runs in projects.get(arm, {}).items():
                if project not in projects.get(other, {}):
                    notes.append(
                        f"project {project} is only in the {arm} arm (run {', '.join(runs)}): "
                        "the gate compares common projects only"
                    )
        return notes

    # -- write-back ----------------------------------------------------------------------------------------
    def write_back(self, home: Any, spike_run_ids: Iterable[str] | None = None) -> list[WriteBack]:
        """Tag each spike's parent run with its stored decision; only runs whose stored payload came from it.

        ``home`` is the evidence home (``EvidenceHome``); a spike without a stored report is left alone, and tags
        already right are not written again.
        """
        wanted = set(spike_run_ids) if spike_run_ids is not None else None
        done = []
        for parent in self.parents():
            sid = parent.data.tags.get(SPIKE_TAG)
            if not sid or (wanted is not None and sid not in wanted):
                continue
            tags = decision_tags(home, sid, parent.info.run_id)
            if tags is None:
                continue
            changed = {k: v for k, v in tags.items() if parent.data.tags.get(k) != v}
            run_id = parent.info.run_id
            for key, value in changed.items():
                self._call(partial(self.client.set_tag, run_id, key, value))
            done.append(WriteBack(sid, parent.info.run_id, changed))
        return done


def decision_tags(home: Any, spike_run_id: str, parent_run_id: str) -> dict[str, str] | None:
    """The tags to write back for a stored decision, or None: no report yet, or its payload is not from that run."""
    try:
        folder = home.report_dir(spike_run_id)
    except StoreError:
        return None
    report_path = folder / "report.json"
    try:
        payload = json.loads((folder / "payload.json").read_text(encoding="utf-8"))
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    source = payload.get("source") if isinstance(payload, dict) else None
    mlflow = source.get("mlflow") if isinstance(source, dict) else None
    if not isinstance(mlflow, dict) or mlflow.get("parent_run_id") != parent_run_id or not isinstance(report, dict):
        return None
    evidence = report.get("evidence")
    provenance = report.get("provenance")
    tags = {
        DECISION_TAG: str(report.get("decision")),
        FAILED_CHECK_TAG: str(report.get("failed_check") or "none"),
        REPORT_TAG: str(Path(report_path).absolute()),
    }
    if isinstance(evidence, dict) and evidence.get("grade"):
        tags[GRADE_TAG] = str(evidence["grade"])
    if isinstance(provenance, dict) and provenance.get("policy_version"):
        tags[POLICY_TAG] = str(provenance["policy_version"])
    return tags


def _finite(value: float) -> bool:
    """Finite as logged: MLflow's SQL stores keep +/-Infinity as the largest double, so that counts as infinite."""
    return math.isfinite(value) and abs(value) < sys.float_info.max


def _shown(value: float) -> str:
    return str(value) if _finite(value) or math.isnan(value) else ("inf" if value > 0 else "-inf")


def _ready(parent: Any) -> bool:
    return str(parent.data.tags.get(COMPLETE_TAG, "")).strip().lower() == "true"


def _at_run(problem: str, path: str, origin: Mapping[str, str]) -> str:
    """A gate problem with the MLflow run behind its JSON path."""
    best = max((p for p in origin if path == p or path.startswith((f"{p}.", f"{p}["))), key=len, default=None)
    return f"{problem} [from {origin[best]}]" if best else problem


def _is_connection_failure(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(
        marker in text
        for marker in ("connection refused", "max retries exceeded", "failed to establish", "connection aborted")
    )


def check_reachable(tracking_uri: str, timeout: float = HEALTH_TIMEOUT_SECONDS) -> None:
    """An http(s) tracking server answers ``/health``, else ``TrackingUnreachable`` (local stores need no check).

    Checked first and once, so an unreachable server fails in seconds instead of after MLflow's retries.
    """
    if not tracking_uri.lower().startswith(("http://", "https://")):
        return
    url = f"{tracking_uri.rstrip('/')}/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s) only, checked above
            response.read(64)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500:
            raise TrackingUnreachable(f"MLflow tracking server {tracking_uri} answers {url} with {exc.code}") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise TrackingUnreachable(f"MLflow tracking server {tracking_uri} is unreachable: {reason}") from None


def payload_text(payload: Mapping[str, object]) -> str:
    """A collected payload as written to a file (the same bytes every time for the same runs)."""
    return json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def quarantine_failure(home: Any, source: MlflowSource, result: Collected) -> Path:
    """A spike that cannot be assembled, quarantined as intake quarantines: a reason file naming the runs at fault.

    There is no payload file to move (nothing was written to the inbox), so only the reason file is written.
    """
    from maml_evidence.store.intake import quarantine_target, reason_path, write_reason

    home.quarantine.mkdir(parents=True, exist_ok=True)
    note = reason_path(quarantine_target(home, Path(f"{result.spike_run_id}.mlflow.json")))
    origin = (
        f"MLflow {source.tracking_uri}, experiment {source.experiment_name!r} (id {source.experiment_id}), "
        f"parent run {result.parent_run_id or '(none)'}"
    )
    write_reason(note, origin, result.error, result.spike_run_id, "nothing moved (no payload could be assembled)")
    return note
