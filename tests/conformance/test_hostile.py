"""The harness's hostile server losing answers on purpose: a hang-up writes nothing, and a held
request ends when the case does (``reset``), long before its bound."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from x402sim.conformance.hostile import HANG_UP, Answer, HostileServer, Seen
from x402sim.http.runner import LOOPBACK, Services

BOUND = 30.0  # far longer than any test may take: only a release can end the hold in time


@pytest.fixture
def served():
    hostile = HostileServer()
    services = Services(LOOPBACK)
    url = services.add("hostile", hostile.app)
    services.start()
    yield hostile, url
    services.stop()


def test_a_hang_up_closes_the_connection_without_an_answer(served):
    hostile, url = served

    async def handler(seen: Seen) -> Answer:
        return HANG_UP if seen.path == "/lost" else Answer(200, body={"ok": True})

    hostile.handler = handler
    with httpx.Client(timeout=5) as http:
        assert http.get(url + "/fine").status_code == 200
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            http.get(url + "/lost")
    assert [s.path for s in hostile.seen] == ["/fine", "/lost"]
    assert hostile.seen[1].answer is None


def test_a_held_request_ends_when_the_case_is_reset(served):
    hostile, url = served
    holding = threading.Event()

    async def handler(seen: Seen) -> Answer:
        held = asyncio.create_task(hostile.hold(BOUND))
        await asyncio.sleep(0)  # one turn of the loop: the hold has registered before we say so
        holding.set()
        await held
        return HANG_UP

    hostile.handler = handler
    with httpx.Client(timeout=BOUND) as http, ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        pending = pool.submit(http.get, url + "/held")
        assert holding.wait(5), "the handler never ran"
        hostile.reset()
        with pytest.raises(httpx.RemoteProtocolError):
            pending.result(timeout=10)
    assert time.monotonic() - started < 10
