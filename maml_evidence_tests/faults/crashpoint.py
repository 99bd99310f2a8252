"""Kill a piece of work at an exact write boundary: SIGKILL right after its n-th atomic rename (or PUT).

Every file the store writes becomes visible through one ``os.replace`` (or ``os.rename``), so "after the n-th
rename" walks every write boundary of a command in order, deterministically, instead of at a random delay.
The work runs in a forked child of the test process (already warm: nothing is imported again).
"""

from __future__ import annotations

import os
import signal
import traceback
from collections.abc import Callable, Sequence


def run_killed_after(
    renames: int | None,
    work: Callable[[], object],
    boundaries: Sequence[tuple[object, str]] = ((os, "replace"), (os, "rename")),
) -> int | None:
    """Run ``work`` in a forked child that dies by SIGKILL right after its ``renames``-th rename.

    Returns None when the child was killed there, else the number of renames the whole work made (``renames``
    None: never kill, just count). A failure of the work itself fails the test with the child's traceback.
    ``boundaries`` are the functions that make a write visible: ``os.replace`` and ``os.rename`` for a local
    home, ``remote.upload`` (one PUT) for a home in a bucket.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: count renames, die at the chosen one
        os.close(read_end)
        count = 0

        def counted(real: Callable[..., None]) -> Callable[..., None]:
            def rename(*args: object, **kwargs: object) -> None:
                nonlocal count
                real(*args, **kwargs)
                count += 1
                if count == renames:
                    os.kill(os.getpid(), signal.SIGKILL)

            return rename

        for owner, name in boundaries:
            setattr(owner, name, counted(getattr(owner, name)))
        status = 0
        try:
            work()
            message = str(count)
        except BaseException:  # noqa: BLE001 - reported to the parent
            message = "error\n" + traceback.format_exc()
            status = 1
        os.write(write_end, message.encode())
        os._exit(status)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        return None
    text = b"".join(chunks).decode()
    if text.startswith("error"):
        raise AssertionError(f"the work failed in the child:\n{text}")
    return int(text)
