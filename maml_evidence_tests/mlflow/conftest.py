"""One real ``mlflow server`` per test session (SQLite store, local artifacts, a free loopback port), and helpers
that log a spike's runs, learning curves and all, through the MLflow client."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from maml_evidence_tests.samples import BIN

mlflow = pytest.importorskip("mlflow", reason='the MLflow tests need the mlflow extra: pip install -e ".[test]"')
from mlflow import MlflowClient  # noqa: E402

READY_LIMIT_SECONDS = 180  # a safety limit for a broken install, not a timing assertion
_names = itertools.count()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session", autouse=True)
def no_telemetry() -> Iterator[None]:
    """MLflow's telemetry off for the session (offline here; with it on the client sets a session id variable)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        yield


@pytest.fixture(scope="session")
def tracking_uri(no_telemetry: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking server for the whole session; stopped (and its process group killed) afterwards."""
    root = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    log = (root / "server.log").open("wb")
    process = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--default-artifact-root",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_LIMIT_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"mlflow server exited with {process.returncode}: {(root / 'server.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not ready: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.25)
        yield uri
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        with contextlib.suppress(ProcessLookupError):  # workers the server started, in its own process group
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="session")
def client(tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri)


@pytest.fixture
def experiment(client: MlflowClient, request: pytest.FixtureRequest) -> Experiment:
    """A fresh experiment for one test (named after it)."""
    name = f"{request.node.name}-{next(_names)}"[:200]
    return Experiment(client, name, client.create_experiment(name))


def curve(steps: int, target: float, final: float, reached: bool = True) -> list[tuple[int, float]]:
    """A learning curve whose first value >= target is at ``steps`` (never, if not reached) and whose last is final."""
    low = target / 2
    if not reached:
        return [(0, low), (steps, final)] if steps else [(0, final)]
    points = [(0, low)] if steps else []
    if final >= target:
        return [*points, (steps, final)]
    return [*points, (steps, target), (steps + 1, final)]


@dataclass
class Experiment:
    """An MLflow experiment and the runs a test logged into it."""

    client: MlflowClient
    name: str
    experiment_id: str
    runs: dict[str, str] = field(default_factory=dict)  # a test's own label -> run id

    def run(
        self,
        label: str,
        tags: Mapping[str, str],
        *,
        params: Mapping[str, object] = {},  # noqa: B006 - read only
        metrics: Mapping[str, Sequence[tuple[int, float]]] = {},  # noqa: B006 - read only
        end: bool = True,
    ) -> str:
        run = self.client.create_run(self.experiment_id, tags=dict(tags), run_name=label)
        run_id = run.info.run_id
        for key, value in params.items():
            self.client.log_param(run_id, key, value)
        for key, points in metrics.items():
            for step, value in points:
                self.client.log_metric(run_id, key, value, step=step)
        if end:
            self.client.set_terminated(run_id)
        self.runs[label] = run_id
        return run_id

    def parent(
        self,
        spike: str,
        *,
        complete: bool = True,
        params: Mapping[str, object] = {},  # noqa: B006 - read only
    ) -> str:
        tags = {"maml_evidence.role": "spike", "maml_evidence.spike_run_id": spike}
        if complete:
            tags["maml_evidence.complete"] = "true"
        return self.run(f"{spike}/parent", tags, params=params)

    def log_payload(self, spike: str, payload: Mapping[str, Any], *, complete: bool = True) -> str:
        """Log a hand-written payload as MLflow runs: a parent with its thresholds and cost profile as params, per
        arm a train run (train_minutes), the candidate's meta_train run, and one adaptation run per project (or per
        replicate) with a learning curve that reaches its target exactly at steps_to_target."""
        params = {**payload.get("thresholds", {}), **payload.get("cost_profile", {})}
        parent = self.parent(spike, complete=complete, params=params)
        for arm in ("baseline", "candidate"):
            raw = payload[arm]
            base = {"maml_evidence.spike_run_id": spike, "maml_evidence.arm": arm}
            if "label" in raw:
                base["maml_evidence.label"] = raw["label"]
            self.run(
                f"{spike}/{arm}/train",
                {**base, "maml_evidence.stage": "train"},
                metrics={"train_minutes": [(0, float(raw["train_minutes"]))]},
            )
            if raw.get("meta_train_minutes"):
                self.run(
                    f"{spike}/{arm}/meta_train",
                    {**base, "maml_evidence.stage": "meta_train"},
                    metrics={"train_minutes": [(0, float(raw["meta_train_minutes"]))]},
                )
            for entry in raw["per_project_adaptation"]:
                target = entry["target_accuracy"]
                tags = {**base, "maml_evidence.project": entry["project"]}
                for replicate in entry.get("replicates", [entry]):
                    run_tags = {**tags, "maml_evidence.seed": str(replicate["seed"])} if "seed" in replicate else tags
                    points = curve(
                        int(replicate["steps_to_target"]),
                        target,
                        replicate.get("final_accuracy", target),
                        replicate.get("reached_target", True),
                    )
                    suffix = f"/seed{replicate['seed']}" if "seed" in replicate else ""
                    self.run(
                        f"{spike}/{arm}/{entry['project']}{suffix}",
                        run_tags,
                        params={"target_accuracy": target},
                        metrics={"val_accuracy": points},
                    )
        return parent
