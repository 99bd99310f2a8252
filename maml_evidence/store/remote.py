"""An evidence home in S3-compatible object storage (``MAML_EVIDENCE_HOME=s3://bucket/prefix``).

Everything the local store keeps in its folder lives under the prefix: payload revisions, reports, table batches,
policy versions, quarantine, commit journals. The store reaches it through the same path API (``upath.UPath``
over ``s3fs``), and the few places where a local folder and a bucket differ dispatch here:

- writes: a file is written locally, then sent with one PUT (an object appears whole or not at all, so no
  rename is needed: ``files.atomic_write``);
- locks: a Postgres advisory lock on the team's database (``MAML_EVIDENCE_LOCK_URL``, else the Postgres storage
  of the Dagster instance), held on its own connection, so a machine that dies releases it with its connection;
- DuckDB: 2.0 has no ``httpfs`` here, so the ``s3fs`` filesystem is registered with every connection that reads
  the views (an analyst's DuckDB 1.x can use ``httpfs`` and an S3 secret instead; see the README);
- what cannot live in a bucket stays in a local folder (``MAML_EVIDENCE_LOCAL``): the inbox, the DuckDB catalog
  file of views, and the default Dagster home.

Credentials and endpoint come from the standard AWS variables (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``), or the usual AWS configuration when they are unset.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from maml_evidence.store.home import StoreError, is_remote

SCHEME = "s3://"
LOCK_URL_ENV = "MAML_EVIDENCE_LOCK_URL"
LOCAL_ENV = "MAML_EVIDENCE_LOCAL"
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
TEAM_EXTRA = 'pip install -e ".[team]" (s3fs, psycopg2-binary)'


class RemoteError(StoreError):
    """An object-storage home that cannot be used as configured (the message says what to change)."""


def split(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> (bucket, prefix without slashes at either end); RemoteError if malformed."""
    rest = url[len(SCHEME) :]
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise RemoteError(
            f"MAML_EVIDENCE_HOME: expected s3://BUCKET[/PREFIX] with a bucket name of 3-63 lowercase letters, "
            f"digits, '.' or '-', got {url!r}"
        )
    prefix = prefix.strip("/")
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise RemoteError(f"MAML_EVIDENCE_HOME: the prefix of {url!r} has an empty, '.' or '..' part")
    return bucket, prefix


def storage_options(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``s3fs`` options from the standard AWS variables; no listing cache (other machines write at any time)."""
    env = os.environ if env is None else env
    # s3fs retries a failed request 5 times itself: botocore's own retries (5 with backoff by default) would
    # multiply them, so an unreachable store took ~40 s to report; now ~5 s, transient errors still retried
    options: dict[str, Any] = {
        "use_listings_cache": False,
        "config_kwargs": {"connect_timeout": 5, "retries": {"max_attempts": 2, "mode": "standard"}},
    }
    if env.get("AWS_ACCESS_KEY_ID"):
        options["key"] = env["AWS_ACCESS_KEY_ID"]
        options["secret"] = env.get("AWS_SECRET_ACCESS_KEY", "")
    client: dict[str, str] = {}
    if env.get("AWS_ENDPOINT_URL"):
        client["endpoint_url"] = env["AWS_ENDPOINT_URL"]
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        client["region_name"] = region
    if client:
        options["client_kwargs"] = client
    return options


def filesystem() -> Any:  # noqa: ANN401 - s3fs has no type hints
    """This process's ``s3fs`` filesystem for the current AWS settings (fsspec keeps one instance per settings and
    process: a forked child gets its own, never the parent's event loop)."""
    try:
        import fsspec
        import s3fs  # noqa: F401 - provides fsspec's "s3" protocol; imported here so that its absence is named
    except ImportError:
        raise RemoteError(f"an s3:// evidence home needs the team extra: {TEAM_EXTRA}") from None
    return fsspec.filesystem("s3", **storage_options())


def root(url: str) -> Path:
    """The home's root as a path object: a ``UPath`` over this process's filesystem.

    Typed as ``Path`` on purpose: the store uses only the pathlib API that ``UPath`` implements, and the places
    that must tell a bucket from a folder check ``isinstance(path, Path)`` (a ``UPath`` over s3 is not one).
    """
    from upath import UPath

    bucket, prefix = split(url)
    fs = filesystem()
    return UPath(f"{SCHEME}{bucket}/{prefix}".rstrip("/"), **fs.storage_options)


def object_path(path: object) -> str:
    """``bucket/key`` of a remote path, as ``s3fs`` names it."""
    return str(path)[len(SCHEME) :]


def ensure_bucket(url: str) -> None:
    """Create the home's bucket if it does not exist; a clear error when the store cannot be reached."""
    bucket, _ = split(url)
    fs = filesystem()
    try:
        if not fs.exists(bucket):
            fs.mkdir(bucket)
    except Exception as exc:  # noqa: BLE001 - botocore/aiohttp raise many kinds; the user needs one line
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or "the AWS default endpoint"
        raise RemoteError(
            f"cannot reach the bucket of {url} at {endpoint} ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:300]}); expected a reachable S3-compatible store and credentials in "
            "AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION"
        ) from None


def upload(local: Path, target: object) -> None:
    """One PUT (a multipart upload for big files, which also appears whole): the object is new or untouched."""
    filesystem().put_file(str(local), object_path(target))


def move(source: object, target: object) -> None:
    """Copy then delete (S3 has no rename): a crash in between leaves both, never neither."""
    fs = filesystem()
    fs.copy(object_path(source), object_path(target))
    fs.rm_file(object_path(source))


def local_folder(url: str, env: Mapping[str, str] | None = None) -> Path:
    """Where this machine keeps what a bucket cannot hold: ``$MAML_EVIDENCE_LOCAL``, else a per-home cache folder."""
    env = os.environ if env is None else env
    chosen = env.get(LOCAL_ENV)
    if chosen:
        return Path(chosen).expanduser().resolve()
    bucket, prefix = split(url)
    cache = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    slug = re.sub(r"[^A-Za-z0-9._-]", "_", prefix) or "_"
    return (cache / "maml-evidence" / "s3" / bucket / slug).resolve()


# ---- locks between machines -------------------------------------------------------------------------------


def lock_url(url: str, dagster_home: Path) -> str:
    """The Postgres database whose advisory locks guard this home: ``$MAML_EVIDENCE_LOCK_URL``, else the
    Postgres storage of the Dagster instance; RemoteError when there is none (a local file lock would not be
    seen by another machine)."""
    chosen = os.environ.get(LOCK_URL_ENV)
    if chosen:
        return chosen
    from maml_evidence.deploy.instance import postgres_url

    found = postgres_url(Path(os.environ.get("DAGSTER_HOME") or dagster_home))
    if found:
        return found
    raise RemoteError(
        f"{url}: writers on different machines need a shared lock, and a local file cannot be one; "
        f"expected {LOCK_URL_ENV}=postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE or a Dagster instance on "
        "Postgres (`maml-evidence instance --postgres-url URL`)"
    )


def _lock_key(name: str) -> int:
    """A signed 64-bit advisory lock key for ``name`` (the same on every machine)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def advisory_lock(database_url: str, name: str, *, blocking: bool = True) -> Iterator[bool]:
    """Hold Postgres advisory lock ``name`` on a connection of its own; yields False when taken and not blocking.

    Released when the block ends or the process dies (its connection closes), like the local ``flock``.
    """
    try:
        import psycopg2
    except ImportError:
        raise RemoteError(f"locks on Postgres need the team extra: {TEAM_EXTRA}") from None
    parts = urlsplit(database_url)
    dsn = database_url.replace(f"{parts.scheme}://", "postgresql://", 1)
    try:
        connection = psycopg2.connect(dsn, connect_timeout=10)
    except psycopg2.Error as exc:
        raise RemoteError(
            f"cannot take lock {name!r}: the lock database is unreachable ({' '.join(str(exc).split())[:200]})"
        ) from None
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            if blocking:
                cursor.execute("SELECT pg_advisory_lock(%s)", (_lock_key(name),))
                taken = True
            else:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", (_lock_key(name),))
                taken = bool(cursor.fetchone()[0])
        if not taken:
            yield False
            return
        yield True
    finally:
        connection.close()  # releases the lock, even if unlocking was never reached


def remote_lock(path: object, *, blocking: bool = True) -> contextlib.AbstractContextManager[bool]:
    """``files.file_lock`` for a lock path inside a remote home (``<home>/.locks/<name>``)."""
    text = str(path)
    home_url = text.rsplit("/.locks/", 1)[0]
    from maml_evidence.store.home import EvidenceHome  # noqa: PLC0415 - home imports this module lazily too

    return advisory_lock(
        lock_url(home_url, EvidenceHome(home_url).dagster_home), f"maml-evidence:{text}", blocking=blocking
    )


def register(connection: Any) -> Any:  # noqa: ANN401
    """Give a DuckDB connection the home's ``s3://`` filesystem (no httpfs needed); returns the connection."""
    connection.register_filesystem(filesystem())
    return connection


def duckdb_connection(root: object, config: dict[str, Any] | None = None) -> Any:  # noqa: ANN401
    """An in-memory DuckDB connection that can read the home at ``root`` (its filesystem registered if remote)."""
    import duckdb

    connection = duckdb.connect(config=config or {})
    if is_remote(root):
        try:
            register(connection)
        except BaseException:
            connection.close()
            raise
    return connection
