"""The x402sim pytest plugin (entry point ``pytest11``): fixtures for people who test their own x402 app.

* ``x402_testbed``: the in-process ``Testbed`` (chain, facilitator, servers and clients as objects).
* ``x402_services``: the conformance harness's chain (JSON-RPC) and facilitator served on loopback,
  with the facts an app needs to be configured against them (URLs, network, asset and its EIP-712
  domain, a payee, funded keys), and ``check_server(app)`` to run the server catalog against an ASGI
  app in process (httpx's ASGI transport, no port) and ``assert_conforms(report)``. An app that
  verifies AP2 mandates or enforces Web Bot Auth is configured from ``trust_env`` (the conformance
  user key and agent keys) and checked with ``check_server(app, trust=["ap2", "web-bot-auth"])``;
  ``reference_app(trust=True)`` is x402sim's own trust-enabled server, configured that way.

Imports of the chain and the harness happen inside the fixtures, so loading the plugin costs nothing
for test runs that do not use it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import pytest

from ..money import UNIT

if TYPE_CHECKING:
    from .harness import Harness


@dataclass
class X402Services:
    """The harness's services and what an app under test needs to know of them."""

    harness: Harness

    @property
    def rpc_url(self) -> str:
        return self.harness.rpc_url

    @property
    def facilitator_url(self) -> str:
        return self.harness.facilitator_url

    @property
    def network(self) -> str:
        return self.harness.network

    @property
    def chain_id(self) -> int:
        return self.harness.chain_id

    @property
    def asset(self) -> str:
        return self.harness.asset

    @property
    def asset_name(self) -> str:
        return self.harness.asset_name

    @property
    def asset_version(self) -> str:
        return self.harness.asset_version

    def new_account(self):
        """A fresh test account (key and address), not funded: e.g. the payee of the app."""
        return self.harness.new_account("plugin")

    def funded_account(self, usdc: int = 10 * UNIT, eth: int = 0):
        """A fresh test account holding ``usdc`` atomic units (and ``eth`` wei)."""
        return self.harness.funded_account(usdc=usdc, eth=eth, label="plugin-payer")

    def balance(self, address: str) -> int:
        return self.harness.balance(address)

    @property
    def trust_env(self) -> dict[str, str]:
        """The trust material a server needs for the trust cases: ``AP2_TRUSTED_USER_JWK`` (the AP2
        user whose mandates it must accept), ``WEB_BOT_AUTH_JWKS`` and ``WEB_BOT_AUTH_DIRECTORY_URL``
        (the agent keys whose signatures it must accept); all JSON or URLs, as a server reads its env."""
        from .kits import trust_kit

        return trust_kit(self.harness).env("server", self.chain_id)

    def reference_app(
        self, *, path: str = "/protected", price: int = 1_000, pay_to: str | None = None, trust: bool = False
    ):
        """x402sim's reference server selling ``GET path`` for ``price`` through the harness, as an ASGI
        app; with ``trust``, verifying AP2 mandates and enforcing Web Bot Auth (``trust_env``)."""
        from .context import Endpoint
        from .reference import reference_server, trust_server
        from .runner import RunOptions, target_env

        options = RunOptions(harness=replace(self.harness.options, price=price), endpoints=[Endpoint(path)])
        env = {
            **target_env("server", self.harness, options, payee=pay_to or self.new_account().address),
            **self.trust_env,
        }
        return (trust_server(env) if trust else reference_server(env))[1]

    def check_server(
        self,
        app,
        *,
        path: str = "/protected",
        method: str = "GET",
        second_path: str | None = None,
        cases: Iterable[str] = (),
        exclude: Iterable[str] = (),
        level: Iterable[str] = (),
        name: str = "asgi app",
        trust: Iterable[str] = (),
    ):
        """Run the server catalog against ``app`` in process; returns the ``RunReport``. The app
        must sell ``method path`` in the harness's asset on its network through ``facilitator_url``.
        Cases needing a second paid route use ``second_path`` (skipped without one). ``trust``: the
        trust features the app implements (``ap2``, ``web-bot-auth``), whose cases then run."""
        from .catalog import select
        from .context import Endpoint
        from .runner import RunOptions, run
        from .targets import AsgiApp
        from .trust import features

        endpoints = [Endpoint(path, method)]
        if second_path:
            endpoints.append(Endpoint(second_path, method))
        selection = select("server", include=cases, exclude=exclude, levels=level)
        options = RunOptions(harness=self.harness.options, endpoints=endpoints, trust=features(trust))
        return run("server", AsgiApp("server", app, name=name), selection, options, harness=self.harness)

    @staticmethod
    def assert_conforms(report) -> None:
        """Fail the test, listing each MUST case that failed or could not be judged, with its message."""
        failures = report.must_failures()
        if failures:
            lines = [f"  {r.id} ({r.outcome}): {r.message}" for r in failures]
            raise AssertionError(f"{len(failures)} MUST cases failed:\n" + "\n".join(lines))


@pytest.fixture
def x402_testbed():
    """An in-process ``Testbed``: a fresh chain with the token, a facilitator, servers and clients."""
    from ..testbed import Testbed

    return Testbed()


@pytest.fixture
def x402_services() -> Iterator[X402Services]:
    """The conformance harness's chain and facilitator (and its Web Bot Auth key directory), served on
    127.0.0.1 for one test."""
    from .harness import Harness
    from .kits import harness_apps

    harness = Harness()
    harness.start(extra_apps=harness_apps("server", harness))
    try:
        yield X402Services(harness)
    finally:
        harness.stop()
