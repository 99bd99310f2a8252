"""The deployment files in maml_evidence/deploy/: they parse, agree with each other and with the package, and the
compose instance's dagster.yaml opens a real Postgres instance. (Docker and Kubernetes do not run here.)"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import import_module, resources
from pathlib import Path

import dagster as dg
import pytest
import yaml

from maml_evidence.deploy.instance import postgres_url
from maml_evidence.store.remote import advisory_lock
from maml_evidence_tests.samples import REPO_ROOT
from maml_evidence_tests.team.conftest import Cluster

DEPLOY = Path(str(resources.files("maml_evidence") / "deploy"))
MODULE = "maml_evidence.definitions"
EVIDENCE_HOME = "s3://maml-evidence/evidence"


def _yaml(name: str) -> dict:
    loaded = yaml.safe_load((DEPLOY / name).read_text(encoding="utf-8"))
    assert isinstance(loaded, dict), name
    return loaded


def _dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text(encoding="utf-8")


def test_every_deploy_file_is_in_the_package_and_parses() -> None:
    names = {p.name for p in DEPLOY.iterdir()}
    assert {"Dockerfile", "compose.yaml", "helm-values.yaml", "dagster.yaml", "workspace.yaml"} <= names
    for name in ("compose.yaml", "helm-values.yaml", "dagster.yaml", "workspace.yaml"):
        _yaml(name)
    # the wheel takes the whole package folder (hatch: packages = ["maml_evidence"]), data files included
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["maml_evidence"]


def test_the_image_serves_the_module_the_repository_loads() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["tool"]["dagster"]["module_name"] == MODULE
    workspace = yaml.safe_load((REPO_ROOT / "workspace.yaml").read_text(encoding="utf-8"))
    assert workspace["load_from"][0]["python_module"]["module_name"] == MODULE
    assert isinstance(import_module(MODULE).defs, dg.Definitions)

    dockerfile = _dockerfile()
    [cmd] = re.findall(r"^CMD (\[.*\])$", dockerfile, flags=re.MULTILINE)
    command = yaml.safe_load(cmd)
    assert command[:3] == ["dagster", "code-server", "start"] and command[command.index("-m") + 1] == MODULE
    assert '".[team]"' in dockerfile and "team" in project["project"]["optional-dependencies"]
    assert f"MAML_EVIDENCE_HOME={EVIDENCE_HOME}" in dockerfile
    # every file the image copies exists, and every console script it or compose runs is installed with dagster
    for source in re.findall(r"^COPY (.+) \S+$", dockerfile, flags=re.MULTILINE):
        for name in source.split():
            assert (REPO_ROOT / name).exists(), name
    compose = _yaml("compose.yaml")
    for service in ("codeserver", "webserver", "daemon"):
        program = compose["services"][service]["command"][0]
        assert program in {"dagster", "dagster-webserver", "dagster-daemon"}
        assert (Path(sys.executable).parent / program).exists(), program
    assert compose["services"]["codeserver"]["command"] == command


def test_compose_and_helm_name_the_same_image_module_and_evidence_home() -> None:
    compose, helm = _yaml("compose.yaml"), _yaml("helm-values.yaml")
    [deployment] = helm["dagster-user-deployments"]["deployments"]
    image = f"{deployment['image']['repository']}:{deployment['image']['tag']}"
    services = compose["services"]
    assert {services[s]["image"] for s in ("codeserver", "webserver", "daemon")} == {image}
    assert deployment["dagsterApiGrpcArgs"] == ["-m", MODULE]
    assert {"name": "MAML_EVIDENCE_HOME", "value": EVIDENCE_HOME} in deployment["env"]
    assert f"MAML_EVIDENCE_HOME={EVIDENCE_HOME}" in helm["runLauncher"]["config"]["k8sRunLauncher"]["envVars"]
    assert helm["runLauncher"]["type"] == "K8sRunLauncher" and helm["postgresql"]["enabled"] is True
    for service in ("codeserver", "webserver", "daemon"):
        env = services[service]["environment"]
        assert env["MAML_EVIDENCE_HOME"] == EVIDENCE_HOME
        # the bucket is the compose S3 service; the inbox is the one volume the Dagster containers share
        host, port = env["AWS_ENDPOINT_URL"].removeprefix("http://").split(":")
        assert host == "seaweedfs" and f"-s3.port={port}" in services["seaweedfs"]["command"]
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "MAML_EVIDENCE_LOCAL"} <= set(env)
        assert f"inbox:{env['MAML_EVIDENCE_INBOX']}" in services[service]["volumes"]
    # no volume holds evidence: every pod reads and writes the bucket, with its S3 settings from one Secret
    assert "volumes" not in deployment and "volumeMounts" not in deployment
    launcher = helm["runLauncher"]["config"]["k8sRunLauncher"]
    assert deployment["envSecrets"] == launcher["envSecrets"] == [{"name": "maml-evidence-s3"}]
    workspace = _yaml("workspace.yaml")["load_from"][0]["grpc_server"]
    assert workspace["host"] == "codeserver" and str(workspace["port"]) in services["codeserver"]["command"]
    # the compose database is the one the instance's environment names
    env = services["codeserver"]["environment"]
    assert services["postgres"]["environment"]["POSTGRES_DB"] == env["DAGSTER_POSTGRES_DB"]
    assert services["postgres"]["environment"]["POSTGRES_USER"] == env["DAGSTER_POSTGRES_USER"]


def test_the_compose_instance_opens_on_postgres(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dagster.yaml compose mounts, with its environment pointed at the test server, is a working instance."""
    url = cluster.new_database()
    database = url.rsplit("/", 1)[1]
    folder = tmp_path / "dagster_home"
    folder.mkdir()
    (folder / "dagster.yaml").write_text((DEPLOY / "dagster.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    for key, value in {
        "DAGSTER_POSTGRES_HOST": "127.0.0.1",
        "DAGSTER_POSTGRES_PORT": str(cluster.port),
        "DAGSTER_POSTGRES_USER": "dagster",
        "DAGSTER_POSTGRES_PASSWORD": "unused-with-trust",
        "DAGSTER_POSTGRES_DB": database,
    }.items():
        monkeypatch.setenv(key, value)
    instance = dg.DagsterInstance.from_config(str(folder))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.run_monitoring_enabled
        instance.add_dynamic_partitions("spike_runs", ["deploy-check"])
        assert instance.get_dynamic_partitions("spike_runs") == ["deploy-check"]
    finally:
        instance.dispose()
    # the same settings give the evidence home's locks between machines (an s3:// home takes them there)
    lock_database = postgres_url(folder)
    assert lock_database == f"postgresql://dagster:unused-with-trust@127.0.0.1:{cluster.port}/{database}"
    with (
        advisory_lock(lock_database, "deploy-check") as taken,
        advisory_lock(lock_database, "deploy-check", blocking=False) as again,
    ):
        assert taken and not again
