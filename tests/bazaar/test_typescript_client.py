"""The TypeScript SDK's Bazaar client (``withBazaar`` of ``@x402/extensions``) reads our facilitator's
``/discovery/resources`` and ``/discovery/search`` over loopback HTTP. Skipped, saying why, where the
TypeScript SDK is not installed (``@x402/extensions`` comes with the pinned ``@x402`` packages)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.interop.test_typescript_sdk import NODE_DIR, skip_module_without_typescript_sdk
from x402sim.actors.server import Route
from x402sim.http import Services, facilitator_app
from x402sim.protocol.bazaar import HttpDeclaration

skip_module_without_typescript_sdk(__name__)
BAZAAR_CJS = NODE_DIR / "node_modules" / "@x402" / "extensions" / "dist" / "cjs" / "bazaar" / "index.js"
if not BAZAAR_CJS.exists():
    pytest.skip(f"@x402/extensions is not installed ({BAZAAR_CJS} is missing)", allow_module_level=True)

SCRIPT = """
const { withBazaar } = require(process.env.BAZAAR_CJS);
(async () => {
  const noAuth = async () => ({ headers: {} });
  const url = process.env.FACILITATOR_URL;
  const bazaar = withBazaar({ url, createAuthHeaders: noAuth }).extensions.bazaar;
  const list = await bazaar.listResources({ type: "http", limit: 1, offset: 1 });
  const first = await bazaar.search({ query: "weather", limit: 1 });
  const rest = await bazaar.search({ query: "weather", limit: 1, cursor: first.pagination.cursor });
  console.log(JSON.stringify({ list, first, rest }));
})().catch((e) => { console.error(String(e)); process.exit(1); });
"""


def test_the_typescript_client_lists_and_searches_our_catalog(tb):
    declaration = HttpDeclaration(example={"city": "Oslo"})
    for name, price in (("cheap", 1_000), ("dear", 5_000)):
        server = tb.server(
            {"GET /weather": Route("GET /weather", price, tags=("weather",), discovery=declaration)},
            base_url=f"http://{name}.test",
        )
        tb.facilitator.role.catalog.register_server(server.role, tb.now)
    services = Services()
    url = services.add("facilitator", facilitator_app(tb.facilitator.role, clock=lambda: tb.now))
    services.start()
    try:
        done = subprocess.run(
            ["node", "-e", SCRIPT],
            env={"BAZAAR_CJS": str(BAZAAR_CJS), "FACILITATOR_URL": url, "PATH": os.environ.get("PATH", "")},
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        services.stop()
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["list"]["pagination"] == {"limit": 1, "offset": 1, "total": 2}
    assert [i["resource"] for i in seen["list"]["items"]] == ["http://dear.test/weather"]
    assert seen["first"]["pagination"] == {"limit": 1, "cursor": "1"}
    assert seen["rest"]["pagination"] == {"limit": 1, "cursor": None}
    found = {seen["first"]["resources"][0]["resource"], seen["rest"]["resources"][0]["resource"]}
    assert found == {"http://cheap.test/weather", "http://dear.test/weather"}
