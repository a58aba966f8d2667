// An @x402/express resource server: GET /weather costs PRICE atomic units of ASSET, paid to
// EVM_PAYEE_ADDRESS on EVM_NETWORK, verified and settled by the HTTP facilitator at FACILITATOR_URL.
//
// Environment: PORT, FACILITATOR_URL, EVM_PAYEE_ADDRESS, EVM_NETWORK (eip155:<id>), ASSET (token
// address), ASSET_NAME and ASSET_VERSION (the token's EIP-712 domain), PRICE (atomic units),
// optional MAX_TIMEOUT_SECONDS. Prints "Server listening on http://127.0.0.1:<port>" when ready.
//
// A local chain id has no default USDC in the SDK, so a money price like "$0.001" cannot be
// converted; the route gives an explicit AssetAmount price {amount, asset, extra: {name, version}}.
// The extra carries the EIP-712 domain: without it the client refuses to sign and the facilitator
// answers invalid_exact_evm_missing_eip712_domain.

import express from "express";
import { HTTPFacilitatorClient } from "@x402/core/server";
import { ExactEvmScheme } from "@x402/evm/exact/server";
import {
  paymentMiddlewareFromHTTPServer,
  x402HTTPResourceServer,
  x402ResourceServer,
} from "@x402/express";

import { chainIdOf, listen, portFromEnv, requireEnv } from "./env.mjs";

const port = portFromEnv();
const facilitatorUrl = requireEnv("FACILITATOR_URL");
const payTo = requireEnv("EVM_PAYEE_ADDRESS");
const network = requireEnv("EVM_NETWORK");
const asset = requireEnv("ASSET");
const assetName = requireEnv("ASSET_NAME");
const assetVersion = requireEnv("ASSET_VERSION");
const price = requireEnv("PRICE");
const maxTimeoutSeconds = Number(process.env.MAX_TIMEOUT_SECONDS || "300");
chainIdOf(network);
if (!/^\d+$/.test(price)) {
  console.error(`PRICE must be an integer number of atomic units, got ${JSON.stringify(price)}`);
  process.exit(2);
}

const resourceServer = new x402ResourceServer(new HTTPFacilitatorClient({ url: facilitatorUrl }));
resourceServer.register(network, new ExactEvmScheme());

const routes = {
  "GET /weather": {
    accepts: {
      scheme: "exact",
      network,
      payTo,
      price: { amount: price, asset, extra: { name: assetName, version: assetVersion } },
      maxTimeoutSeconds,
    },
    description: "Weather report",
    mimeType: "application/json",
  },
};
const httpServer = new x402HTTPResourceServer(resourceServer, routes);

// Ask the facilitator for its supported kinds now, so a facilitator that is down or does not
// support this network fails here, before readiness is reported, and not on the first request.
try {
  await httpServer.initialize();
} catch (error) {
  console.error(`cannot initialize against the facilitator at ${facilitatorUrl}: ${error.message}`);
  process.exit(1);
}

const app = express();
app.get("/health", (_req, res) => {
  res.json({ status: "ok", network, payTo, asset, price });
});
app.use(paymentMiddlewareFromHTTPServer(httpServer, undefined, undefined, false));
app.get("/weather", (_req, res) => {
  res.json({ report: { weather: "sunny", temperature: 70 } });
});

listen(app, port, "Server listening");
