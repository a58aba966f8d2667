"""A fork server for ``python_client.py`` (or the client module its argument names): the SDK is
imported once, and each run is a child forked from this process, so a conformance run of the Python
client does not pay a second of imports per case.

Each run still has a process of its own: its environment, its SDK client, its output and its exit
code, as when ``python_client.py`` is started afresh (a case cannot see another's state).

Protocol, one JSON object per line. On stdin, a run: ``{"id": n, "env": {...}, "out": path, "timeout":
seconds}``: the child runs the client with ``env`` added to this process's environment, stdin from
/dev/null and stdout and stderr into the file ``out``. On stdout, once the child has ended:
``{"id": n, "exit_code": code}``, ``code`` null when it was killed at its timeout (a negative code: the
signal that ended it). Runs may overlap. At the end of stdin the server kills what still runs and exits.

Single-threaded on purpose (one ``selectors`` loop over stdin and a pidfd per child), so forking is
safe.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import selectors
import signal
import sys
import time
import traceback
from pathlib import Path

# The client module each child runs: python_client, or the one named by the first argument (a
# dotted name from the repository root: tests.interop.python.sdk_mcp_client, the SDK's MCP client)
if len(sys.argv) > 1:
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
python_client = importlib.import_module(sys.argv[1] if len(sys.argv) > 1 else "python_client")


def _child(env: dict[str, str], out: str) -> None:
    """In the forked child: run the client once, as its own process would; never returns."""
    code = 1
    try:
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.environ.update(env)
        code = asyncio.run(python_client.main())
    except SystemExit as exc:  # _common.env exits 2 naming a missing variable
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _answer(run_id, exit_code: int | None) -> None:
    sys.stdout.write(json.dumps({"id": run_id, "exit_code": exit_code}) + "\n")
    sys.stdout.flush()


def main() -> None:
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ, None)
    running: dict[int, tuple[object, int, float]] = {}  # pidfd -> (run id, pid, deadline)
    pending = b""
    while True:
        deadlines = [deadline for _, _, deadline in running.values()]
        wait = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        for key, _ in selector.select(wait):
            if key.fd == 0:
                chunk = os.read(0, 65536)
                if not chunk:
                    for _, pid, _ in running.values():
                        os.kill(pid, signal.SIGKILL)
                        os.waitpid(pid, 0)
                    return
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in filter(None, lines):
                    request = json.loads(line)
                    pid = os.fork()
                    if pid == 0:
                        _child(request["env"], request["out"])
                    pidfd = os.pidfd_open(pid)
                    selector.register(pidfd, selectors.EVENT_READ, None)
                    running[pidfd] = (request["id"], pid, time.monotonic() + float(request["timeout"]))
            else:
                run_id, pid, _ = running.pop(key.fd)
                selector.unregister(key.fd)
                os.close(key.fd)
                _answer(run_id, os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
        now = time.monotonic()
        for pidfd, (run_id, pid, deadline) in list(running.items()):
            if now >= deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                del running[pidfd]
                selector.unregister(pidfd)
                os.close(pidfd)
                _answer(run_id, None)


if __name__ == "__main__":
    main()
