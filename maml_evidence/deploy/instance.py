"""The evidence home's Dagster instance on Postgres: the URL's form, the connection check, the dagster.yaml.

Standard library at import time (the ``instance`` command's start-up); SQLAlchemy, psycopg2 and PyYAML are
imported where they are used.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import SplitResult, quote, urlsplit

DRIVER_SCHEME, PLAIN_SCHEME = "postgresql+psycopg2", "postgresql"
EXPECTED = f"{DRIVER_SCHEME}://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
TEAM_EXTRA = 'the team extra: pip install -e ".[team]" (dagster-postgres, psycopg2-binary)'


class InstanceError(ValueError):
    """The URL, the server or the existing dagster.yaml is not what the command expected (exit 2)."""


def masked(url: str) -> str:
    """The URL with its password (if any) shown as ***."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{hostinfo}").geturl()


def normalized_url(url: str) -> tuple[str, str | None]:
    """The URL with the psycopg2 driver named, and a note if it had to be added; InstanceError if malformed."""

    def bad(what: str) -> InstanceError:
        return InstanceError(f"--postgres-url {masked(url)!r}: {what}; expected {EXPECTED}")

    try:
        parts: SplitResult = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise bad(f"not a URL ({exc})") from None
    if parts.scheme not in (DRIVER_SCHEME, PLAIN_SCHEME):
        raise bad(f"scheme {parts.scheme or '(none)'!r} is not {DRIVER_SCHEME!r} or {PLAIN_SCHEME!r}")
    if not parts.hostname:
        raise bad("no host")
    if not parts.username:
        raise bad("no user")
    if not parts.path.strip("/") or "/" in parts.path.strip("/"):
        raise bad("no database name (the path after the host)")
    if port is not None and port <= 0:
        raise bad(f"port {port} is not a port number")
    note = None
    if parts.scheme == PLAIN_SCHEME:
        parts = parts._replace(scheme=DRIVER_SCHEME)
        note = (
            f"using {DRIVER_SCHEME}:// (the driver the team extra installs); a plain {PLAIN_SCHEME}:// URL "
            "makes SQLAlchemy look for psycopg 3"
        )
    return parts.geturl(), note


def check_connection(url: str, timeout_seconds: int = 5) -> None:
    """Connect once and run ``SELECT 1``; InstanceError naming the URL (password masked) if that fails."""
    try:
        import dagster_postgres  # noqa: F401 - the storage the dagster.yaml names
        import psycopg2  # noqa: F401
        import sqlalchemy
    except ImportError as exc:
        raise InstanceError(f"a Postgres instance needs {TEAM_EXTRA}; missing: {exc.name}") from None
    engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": timeout_seconds})
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    except sqlalchemy.exc.SQLAlchemyError as exc:
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
        raise InstanceError(
            f"--postgres-url {masked(url)!r}: cannot connect ({reason}); expected a reachable Postgres server "
            "where this user may create tables in that database"
        ) from None
    finally:
        engine.dispose()


# what the Postgres instance's dagster.yaml sets itself; every other section of a replaced file is kept
STORAGE_KEYS = ("storage", "run_storage", "event_log_storage", "schedule_storage")
OWN_KEYS = (*STORAGE_KEYS, "telemetry")
RUN_MONITORING = {"enabled": True, "start_timeout_seconds": 180}


def postgres_yaml(url: str, kept: dict[str, object] | None = None) -> str:
    """The instance's dagster.yaml: Postgres storage for runs, event log and schedules, telemetry off, run
    monitoring on (unless ``kept`` has its own), then ``kept``: a replaced file's other sections as they were
    (run coordinator, run launcher, retries...)."""
    import json

    text = (
        "# Dagster instance of this evidence home on Postgres (written by `maml-evidence instance`): runs, the event\n"
        "# log (dynamic partitions, asset-check results) and schedule and sensor state live in the database.\n"
        "telemetry:\n"
        "  enabled: false\n"
        "storage:\n"
        "  postgres:\n"
        f"    postgres_url: {json.dumps(url)}\n"
    )
    kept = {key: value for key, value in (kept or {}).items() if key not in OWN_KEYS}
    if kept.get("run_monitoring") == RUN_MONITORING:
        del kept["run_monitoring"]  # this file's own, written below with its comment
    if "run_monitoring" not in kept:
        text += (
            "# Runs the daemon launched (sensor, schedule, UI) whose worker is gone are failed by Dagster's run\n"
            "# monitoring; runs of maml-evidence commands by their heartbeat (README: Team deployment).\n"
            "run_monitoring:\n"
            f"  enabled: {str(RUN_MONITORING['enabled']).lower()}\n"
            f"  start_timeout_seconds: {RUN_MONITORING['start_timeout_seconds']}\n"
        )
    if kept:
        import yaml

        text += "# kept from the dagster.yaml this one replaced\n" + yaml.safe_dump(kept, sort_keys=False)
    return text


def _settings(config_file: Path) -> dict[str, object]:
    """The existing dagster.yaml's sections (InstanceError if it is not a YAML mapping)."""
    import yaml

    try:
        config = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InstanceError(f"{config_file}: cannot read it as YAML ({exc}); expected a Dagster dagster.yaml") from None
    if not isinstance(config, dict):
        raise InstanceError(f"{config_file}: expected a mapping of Dagster instance settings, got {config!r}")
    return config


def describe(folder: Path) -> str:
    """Which storage the instance in ``folder`` uses, in one line (a password masked)."""
    config_file = folder / "dagster.yaml"
    if not config_file.is_file():
        return f"local SQLite in {folder} (no dagster.yaml yet: the next command writes the default one)"
    config = _settings(config_file)
    storage = config.get("storage")
    if isinstance(storage, dict) and isinstance(storage.get("postgres"), dict):
        settings = storage["postgres"]
        url, db = settings.get("postgres_url"), settings.get("postgres_db")
        if isinstance(url, str):
            return f"Postgres {masked(url)} ({config_file})"
        if isinstance(url, dict) and "env" in url:
            return f"Postgres, URL from ${url['env']} ({config_file})"
        if isinstance(db, dict):
            fields = ", ".join(f"{k}={v}" for k, v in db.items() if k != "password")
            return f"Postgres ({fields}) ({config_file})"
    if storage or any(key in config for key in ("run_storage", "event_log_storage", "schedule_storage")):
        kind = ", ".join(sorted(storage)) if isinstance(storage, dict) else "per-storage settings"
        return f"storage {kind} as configured in {config_file}"
    return f"local SQLite in {folder} ({config_file})"


def postgres_url(folder: Path) -> str | None:
    """The Postgres URL of the instance in ``folder`` (its ``storage: postgres`` settings); None if not on Postgres."""
    config_file = folder / "dagster.yaml"
    if not config_file.is_file():
        return None
    storage = _settings(config_file).get("storage")
    settings = storage.get("postgres") if isinstance(storage, dict) else None
    if not isinstance(settings, dict):
        return None
    url, db = settings.get("postgres_url"), settings.get("postgres_db")
    if isinstance(url, dict) and isinstance(url.get("env"), str):
        url = os.environ.get(url["env"])
    if isinstance(url, str) and url:
        return url
    if isinstance(db, dict):

        def value(field: str, default: object = "") -> str:
            found = db.get(field, default)
            if isinstance(found, dict) and isinstance(found.get("env"), str):
                found = os.environ.get(found["env"], "")
            return str(found)

        password = value("password")
        auth = quote(value("username"), safe="") + (f":{quote(password, safe='')}" if password else "")
        return f"postgresql://{auth}@{value('hostname')}:{value('port', 5432)}/{value('db_name')}"
    return None


def write_postgres_instance(folder: Path, url: str, *, force: bool = False) -> tuple[Path, bool]:
    """Write ``folder``/dagster.yaml for this (normalized, reachable) URL; (its path, whether it changed).

    A different existing file is replaced only with ``force``, and its sections other than storage and telemetry
    (a run coordinator or launcher, run monitoring, retries) are kept.
    """
    config_file = folder / "dagster.yaml"
    text = postgres_yaml(url)
    if config_file.is_file():
        import yaml

        existing = _settings(config_file)
        text = postgres_yaml(url, existing)
        if existing == yaml.safe_load(text):
            return config_file, False
        if not force:
            raise InstanceError(
                f"{config_file} exists with other settings ({describe(folder)}); expected no dagster.yaml there, "
                "or --force to replace it (Dagster's run history in the old storage is not moved)"
            )
    from maml_evidence.store.files import atomic_write_text

    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(config_file, text)
    return config_file, True


def unavailable(folder: Path, exc: Exception) -> InstanceError | None:
    """The error to show when the instance in ``folder`` cannot be opened because of its Postgres storage (the
    extra missing, the server unreachable); None when the failure is not about that (it is raised as it is)."""
    try:
        where = describe(folder)
    except InstanceError as unreadable:
        return unreadable
    text = " ".join(str(exc).split())
    if "dagster_postgres" in text or isinstance(exc, ImportError):
        return InstanceError(f"the Dagster instance in {folder} uses Postgres storage, which needs {TEAM_EXTRA}")
    if not where.startswith("Postgres"):
        return None
    for password in _passwords(folder):
        text = text.replace(password, "***")
    return InstanceError(
        f"the Dagster instance ({where}) cannot be opened: {text[:300]}; expected a reachable Postgres server "
        "(check it with `maml-evidence instance`, or put the home back on SQLite by removing that dagster.yaml)"
    )


def _passwords(folder: Path) -> list[str]:
    """Passwords written in the folder's dagster.yaml, so an error message never shows them."""
    text = (folder / "dagster.yaml").read_text(encoding="utf-8", errors="replace")
    found = []
    for token in text.split():
        token = token.strip("\"'")
        if "://" in token:
            try:
                secret = urlsplit(token).password
            except ValueError:
                continue
            if secret:
                found.append(secret)
    return found


class _RetryNoise(logging.Filter):
    """dagster-postgres logs each connection retry on the root logger; the command reports the outcome once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Retrying failed database connection")


@contextmanager
def quiet_connection_retries() -> Iterator[None]:
    """While opening an instance: no line per retry on the terminal (the failure, if any, is one error)."""
    noise = _RetryNoise()
    root = logging.getLogger()
    root.addFilter(noise)
    try:
        yield
    finally:
        root.removeFilter(noise)
