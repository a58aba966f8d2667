"""Every x402sim service over one embedded chain, reached in process through httpx's ASGI transport."""

from __future__ import annotations

import asyncio
import time

import httpx

from x402sim.actors import Facilitator
from x402sim.actors.server import ResourceServer
from x402sim.evm import LocalChain, address_of_key
from x402sim.evm.chain import ETHER
from x402sim.fuzz import Probe, Target
from x402sim.http import FacilitatorClient, facilitator_app, resource_server_app
from x402sim.http.chain_rpc import chain_rpc_app
from x402sim.protocol import PAYMENT_REQUIRED, PaymentRequired, decode_header

PRICE = 1_000
PROXY_PRICE = 2_000


def _origin_app():
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def data(request):
        return JSONResponse({"origin": True})

    return Starlette(routes=[Route("/data", data)])


class AsgiWorld:
    """Chain RPC, facilitator, resource server and paywall proxy, wired without sockets."""

    def __init__(self, seed: int = 5) -> None:
        self.loop = asyncio.new_event_loop()
        self.chain = LocalChain(seed=seed, start_time=int(time.time()))
        payer_key, fkey, payee_key = (self.chain.new_key() for _ in range(3))
        self.payee = address_of_key(payee_key)
        self.chain.fund_many([(address_of_key(payer_key), 10**12, 0), (address_of_key(fkey), 0, 10 * ETHER)])
        self.facilitator = Facilitator(self.chain, fkey)
        self.apps = {"facilitator": facilitator_app(self.facilitator, clock=time.time)}
        self.apps["chain"] = chain_rpc_app(self.chain, clock=time.time)

        def via(name: str) -> FacilitatorClient:
            return FacilitatorClient("http://facilitator", transport=httpx.ASGITransport(app=self.apps[name]))

        self.server = ResourceServer.with_prices({"GET /weather": PRICE}, chain=self.chain, pay_to=self.payee)
        self.apps["server"] = resource_server_app(self.server, via("facilitator"))
        self.proxy = ResourceServer.with_prices(
            {"GET /data": PROXY_PRICE}, chain=self.chain, pay_to=self.payee
        )
        self.apps["proxy"] = resource_server_app(
            self.proxy,
            via("facilitator"),
            origin="http://origin",
            origin_transport=httpx.ASGITransport(app=_origin_app()),
        )
        self.clients = {
            name: httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}")
            for name, app in self.apps.items()
        }
        self.target = Target(
            server_path="/weather",
            server_challenge=self.challenge("server", "/weather"),
            proxy_path="/data",
            proxy_challenge=self.challenge("proxy", "/data"),
            payer_key=payer_key,
            network=self.chain.network,
            token=self.chain.usdc,
            now=lambda: int(time.time()),
            seed=seed,
        )

    def challenge(self, service: str, path: str) -> PaymentRequired:
        answer = self.run(self.clients[service].get(path))
        return decode_header(answer.headers[PAYMENT_REQUIRED], PaymentRequired)

    def run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    def send(self, probe: Probe) -> httpx.Response:
        request = self.clients[probe.service].build_request(
            probe.method, probe.path, headers=list(probe.headers), content=probe.body
        )
        return self.run(self.clients[probe.service].send(request))

    def close(self) -> None:
        for client in self.clients.values():
            self.run(client.aclose())
        self.loop.close()
