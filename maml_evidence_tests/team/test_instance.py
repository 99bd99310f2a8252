"""`maml-evidence instance`: the evidence home's Dagster instance shown, or written for Postgres."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from maml_evidence.deploy.instance import InstanceError, masked, normalized_url, postgres_yaml
from maml_evidence_tests.team.conftest import Cluster, TeamHome


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("mysql://u@h/db", "scheme 'mysql'"),
        ("postgresql+psycopg://u@h/db", "scheme 'postgresql+psycopg'"),
        ("postgresql://u@/db", "no host"),
        ("postgresql://h:5432/db", "no user"),
        ("postgresql://u:pw@h:5432", "no database name"),
        ("postgresql://u:pw@h:99999/db", "not a URL"),
        ("not a url", "scheme '(none)'"),
    ],
)
def test_malformed_urls_are_named_with_what_was_expected(url: str, complaint: str) -> None:
    with pytest.raises(InstanceError) as raised:
        normalized_url(url)
    message = str(raised.value)
    assert complaint in message and "postgresql+psycopg2://USER[:PASSWORD]@HOST[:PORT]/DATABASE" in message
    assert "pw" not in message.replace("expected", "")


def test_a_plain_postgresql_url_gets_the_psycopg2_driver_with_a_note() -> None:
    assert normalized_url("postgresql+psycopg2://u:pw@h:5/db") == ("postgresql+psycopg2://u:pw@h:5/db", None)
    url, note = normalized_url("postgresql://u:pw@h/db")
    assert url == "postgresql+psycopg2://u:pw@h/db" and note is not None and "psycopg2" in note
    assert masked("postgresql+psycopg2://u:s3cret@h:5/db") == "postgresql+psycopg2://u:***@h:5/db"
    text = postgres_yaml("postgresql+psycopg2://u:pw@h/db")
    config = yaml.safe_load(text)
    assert config["storage"] == {"postgres": {"postgres_url": "postgresql+psycopg2://u:pw@h/db"}}
    assert config["telemetry"] == {"enabled": False} and config["run_monitoring"]["enabled"] is True


def test_the_command_writes_a_working_postgres_instance_and_shows_it(team_home: TeamHome, cluster: Cluster) -> None:
    plain = team_home.url.replace("postgresql+psycopg2://", "postgresql://")
    shown = team_home.cli("instance")
    assert shown.returncode == 0 and "local SQLite" in shown.stdout, shown.stdout + shown.stderr

    done = team_home.cli("instance", "--postgres-url", plain)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "psycopg2" in done.stderr  # the note on the rewritten scheme
    config = yaml.safe_load((team_home.dagster_home / "dagster.yaml").read_text(encoding="utf-8"))
    assert config["storage"]["postgres"]["postgres_url"] == team_home.url
    assert config["telemetry"] == {"enabled": False}
    shown = team_home.cli("instance")
    assert shown.returncode == 0 and f"Postgres {team_home.url}" in shown.stdout, shown.stdout

    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(team_home.dagster_home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
    finally:
        instance.dispose()

    # the same URL again: nothing to do; another one: refused without --force, replaced with it
    again = team_home.cli("instance", "--postgres-url", team_home.url)
    assert again.returncode == 0 and "unchanged" in again.stdout, again.stdout + again.stderr
    other = cluster.new_database()
    refused = team_home.cli("instance", "--postgres-url", other)
    assert refused.returncode == 2 and refused.stdout == ""
    assert "exists with other settings" in refused.stderr and "--force" in refused.stderr
    assert "Traceback" not in refused.stderr
    forced = team_home.cli("instance", "--postgres-url", other, "--force")
    assert forced.returncode == 0, forced.stderr
    assert other in (team_home.dagster_home / "dagster.yaml").read_text(encoding="utf-8")


def test_an_unreachable_server_is_an_error_naming_the_url_without_its_password(
    team_home: TeamHome, cluster: Cluster
) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql+psycopg2://dagster:s3cret@127.0.0.1:{port}/nowhere"
    failed = team_home.cli("instance", "--postgres-url", url)
    assert failed.returncode == 2 and failed.stdout == ""
    assert f"postgresql+psycopg2://dagster:***@127.0.0.1:{port}/nowhere" in failed.stderr
    assert "cannot connect" in failed.stderr and "s3cret" not in failed.stderr and "Traceback" not in failed.stderr
    assert not (team_home.dagster_home / "dagster.yaml").exists()
    missing_db = cluster.url("no_such_database")
    failed = team_home.cli("instance", "--postgres-url", missing_db)
    assert failed.returncode == 2 and "no_such_database" in failed.stderr, failed.stderr
    bad = team_home.cli("instance", "--postgres-url", "sqlite:///x.db")
    assert bad.returncode == 2 and "scheme 'sqlite'" in bad.stderr, bad.stderr


def test_commands_on_an_unreachable_postgres_instance_fail_in_one_line(team_home: TeamHome) -> None:
    """A dagster.yaml written by hand, its server down: `ingest` names the instance (password masked), exit 2."""
    import socket

    from maml_evidence_tests.samples import SAMPLE_INBOX

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    team_home.dagster_home.mkdir()
    url = f"postgresql+psycopg2://dagster:s3cret@127.0.0.1:{port}/dagster"
    (team_home.dagster_home / "dagster.yaml").write_text(
        f"storage:\n  postgres:\n    postgres_url: '{url}'\n", encoding="utf-8"
    )
    sample = str(sorted(SAMPLE_INBOX.glob("*.json"))[0])
    # (one command: Dagster's Postgres storage retries the connection for ~10 s before it gives up)
    failed = team_home.cli("ingest", sample)
    assert failed.returncode == 2, failed.stdout + failed.stderr
    assert "Traceback" not in failed.stderr and "s3cret" not in failed.stderr, failed.stderr
    assert f"dagster:***@127.0.0.1:{port}/dagster" in failed.stderr and "cannot be opened" in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr
    # the hand-written file is used as it is, never replaced by the local default
    assert url in (team_home.dagster_home / "dagster.yaml").read_text(encoding="utf-8")


def test_without_the_team_extra_a_postgres_instance_is_a_one_line_error(team_home: TeamHome, tmp_path: Path) -> None:
    """dagster-postgres shadowed by a package that fails to import, as on an install without the team extra."""
    from maml_evidence_tests.samples import SAMPLE_INBOX

    assert team_home.cli("instance", "--postgres-url", team_home.url).returncode == 0
    blocked = tmp_path / "blocked" / "dagster_postgres"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('not installed (test)', name='dagster_postgres')\n")
    without = {"PYTHONPATH": str(blocked.parent)}
    sample = str(sorted(SAMPLE_INBOX.glob("*.json"))[0])
    for args in (("ingest", sample), ("instance", "--postgres-url", team_home.url)):
        failed = team_home.cli(*args, **without)
        assert failed.returncode == 2, failed.stdout + failed.stderr
        assert 'pip install -e ".[team]"' in failed.stderr and "Traceback" not in failed.stderr, failed.stderr


def test_forcing_over_a_file_with_a_run_coordinator_keeps_it(team_home: TeamHome) -> None:
    team_home.dagster_home.mkdir()
    (team_home.dagster_home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: true\n"
        "run_coordinator:\n  module: dagster._core.run_coordinator\n  class: QueuedRunCoordinator\n"
        "  config:\n    max_concurrent_runs: 3\n",
        encoding="utf-8",
    )
    refused = team_home.cli("instance", "--postgres-url", team_home.url)
    assert refused.returncode == 2 and "--force" in refused.stderr, refused.stderr
    forced = team_home.cli("instance", "--postgres-url", team_home.url, "--force")
    assert forced.returncode == 0, forced.stderr
    config = yaml.safe_load((team_home.dagster_home / "dagster.yaml").read_text(encoding="utf-8"))
    assert config["run_coordinator"]["config"] == {"max_concurrent_runs": 3}
    assert config["telemetry"] == {"enabled": False} and config["run_monitoring"]["enabled"] is True
    assert config["storage"]["postgres"]["postgres_url"] == team_home.url
    again = team_home.cli("instance", "--postgres-url", team_home.url)
    assert again.returncode == 0 and "unchanged" in again.stdout, again.stdout + again.stderr

    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(team_home.dagster_home))
    try:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    finally:
        instance.dispose()
