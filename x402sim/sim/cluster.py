"""The Dask cluster that sweeps and sharded runs use.

Rules: by default a ``LocalCluster`` of single-threaded worker processes (``os.cpu_count()``, at
most one per task) bound to 127.0.0.1, its dashboard on loopback too, closed at the end; or a
``Client`` connected to an existing scheduler, which must be on this machine unless
``allow_remote`` (a scheduler can make this process unpickle what it sends). A scheduler that
cannot be used raises ``SweepError`` before anything runs. Nothing here knows what the tasks do.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os

from ..errors import InputError


class SweepError(InputError):
    """A sweep that cannot start: a bad grid, option, scenario or output folder (or a scheduler,
    of a sweep or a sharded run, that cannot be used)."""


def is_loopback(address: str) -> bool:
    """Whether the scheduler ``address`` is on this machine."""
    from distributed.comm import parse_address, parse_host_port

    _, location = parse_address(address)
    host = parse_host_port(location)[0] if ":" in location else location
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def local_cluster(workers: int):
    """A ``LocalCluster`` of ``workers`` single-threaded processes, everything on 127.0.0.1."""
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        worker_dashboard_address=None,
        silence_logs=logging.ERROR,
    )


@contextlib.contextmanager
def dask_client(workers: int | None, scheduler, allow_remote: bool, n_tasks: int):
    """A Dask client: on a local cluster of ``workers`` processes (at most ``n_tasks``), or on
    ``scheduler`` (an address, loopback only unless ``allow_remote``; a ``LocalCluster``; a ``Client``)."""
    from distributed import Client

    if scheduler is None:
        n = max(1, min(workers or os.cpu_count() or 1, n_tasks))
        with local_cluster(n) as cluster, Client(cluster) as client:
            yield client
        return
    if isinstance(scheduler, Client):
        yield scheduler
        return
    address = getattr(scheduler, "scheduler_address", scheduler)  # a LocalCluster, or its address
    if not allow_remote and not is_loopback(address):
        raise SweepError(
            f"--scheduler {address}: not a loopback address; a scheduler can make this process unpickle "
            "what it sends, so x402sim connects to this machine only unless --allow-remote is given"
        )
    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise SweepError(f"--scheduler {address}: cannot connect: {exc}") from None
    with client:
        yield client
