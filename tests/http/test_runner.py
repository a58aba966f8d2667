"""Services' sockets: loopback only by default, and Nagle off on every accepted connection."""

import asyncio
import socket

import pytest

from x402sim.http.runner import ServiceError, Services, bind, is_loopback


def test_accepted_connections_have_nagle_off():
    """Without TCP_NODELAY each small HTTP answer waits ~40 ms for a delayed ACK (seen: 42 ms per
    request instead of 0.7 ms); asyncio sets it only on sockets that declare IPPROTO_TCP."""

    async def check() -> int:
        listener = bind("127.0.0.1", 0)
        accepted = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport):
                sock = transport.get_extra_info("socket")
                accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        _, writer = await asyncio.open_connection(*listener.getsockname())
        try:
            return await asyncio.wait_for(accepted, 5)
        finally:
            writer.close()
            server.close()

    assert asyncio.run(check()) != 0


def test_port_in_use_is_named():
    sock = bind("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        with pytest.raises(ServiceError, match=f"127.0.0.1:{port}: port in use"):
            bind("127.0.0.1", port)
    finally:
        sock.close()


def test_services_refuse_a_public_address_unless_allowed():
    with pytest.raises(ServiceError, match="only loopback"):
        Services("0.0.0.0")
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")
