"""An example: test your own x402 app with the x402sim pytest plugin (run by x402sim's test suite).

The plugin is registered when x402sim is installed; its fixtures need no import. ``x402_services``
serves an embedded chain and a facilitator on 127.0.0.1; the app under test is configured against
them and judged in process (no port) by the server catalog, each case decided on chain.

Here "your app" is a Starlette app selling ``GET /protected`` through x402sim's resource-server
middleware; swap in your FastAPI or Starlette app with its own x402 middleware.
"""

from x402sim.actors import ResourceServer, Route
from x402sim.http import FacilitatorClient, resource_server_app


def make_app(services, payee: str):
    """Your app, configured with the chain's network and asset and the harness's facilitator."""
    seller = ResourceServer(
        network=services.network,
        asset=services.asset,
        asset_name=services.asset_name,
        asset_version=services.asset_version,
        pay_to=payee,
        routes={
            "GET /protected": Route("GET /protected", 1_000, description="a paid report"),
            "GET /protected-2": Route("GET /protected-2", 1_000, description="another paid report"),
        },
    )
    return resource_server_app(seller, FacilitatorClient(services.facilitator_url))


def test_my_app_passes_every_must_case(x402_services):
    payee = x402_services.new_account().address
    app = make_app(x402_services, payee)
    report = x402_services.check_server(app, second_path="/protected-2", level=["MUST"])
    x402_services.assert_conforms(report)
    assert report.counts()["passed"] > 0
    # The chain agrees: the payee was paid by the cases that paid.
    assert x402_services.balance(payee) > 0


def test_one_group_of_cases(x402_services):
    payee = x402_services.new_account().address
    report = x402_services.check_server(make_app(x402_services, payee), cases=["server.payment.*"])
    assert {r.id.split(".")[1] for r in report.results} == {"payment"}
    x402_services.assert_conforms(report)


def test_the_testbed_fixture(x402_testbed):
    buyer = x402_testbed.client(x402_testbed.account(usdc=10_000))
    seller = x402_testbed.server({"GET /data": 2_500})
    result = buyer.get(seller, "/data")
    assert result.status == 200
    assert x402_testbed.chain.balance_of(seller.role.pay_to) == 2_500
