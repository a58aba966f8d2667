// An @x402/express resource server as a conformance target, following the official x402 e2e harness's
// environment contract.
//
// Environment: PORT, FACILITATOR_URL, EVM_NETWORK (eip155:<id>), EVM_PAYEE_ADDRESS (or
// SERVER_EVM_ADDRESS), PROTECTED_PATH, SECOND_PROTECTED_PATH, FAILING_PATH (a paid route whose
// handler answers 500), REDIRECT_PATH (one whose handler answers 303 to PROTECTED_PATH); on the local chain also EVM_ASSET, EVM_ASSET_NAME, EVM_ASSET_VERSION and
// PRICE_ATOMIC; FACILITATOR_TIMEOUT_SECONDS, when set, bounds each facilitator call (the SDK's own
// default is 90 s). Endpoints besides the paid routes: GET /health, POST /close (exit 0).
// Prints "Server listening on http://127.0.0.1:<port>" when ready.
//
// Configuration is the SDK's default: each route costs "$0.001" on EVM_NETWORK, the exact scheme
// is registered with the SDK's helper (eip155:*), and the SDK picks its default USDC for the
// network. The local chain (eip155:31337) has no default asset in the SDK, so there each route is
// priced with an explicit AssetAmount {amount, asset, extra: {name, version}} instead.

import express from "express";
import { HTTPFacilitatorClient } from "@x402/core/server";
import { registerExactEvmScheme } from "@x402/evm/exact/server";
import { paymentMiddleware, x402ResourceServer } from "@x402/express";

import { chainIdOf, listen, portFromEnv, requireEnv } from "./env.mjs";

const LOCAL_NETWORK = "eip155:31337";

const port = portFromEnv();
const facilitatorUrl = requireEnv("FACILITATOR_URL");
const network = requireEnv("EVM_NETWORK");
const payTo = process.env.EVM_PAYEE_ADDRESS || requireEnv("SERVER_EVM_ADDRESS");
const paths = [
  requireEnv("PROTECTED_PATH"),
  requireEnv("SECOND_PROTECTED_PATH"),
  requireEnv("FAILING_PATH"),
  requireEnv("REDIRECT_PATH"),
];
chainIdOf(network);

const price =
  network === LOCAL_NETWORK
    ? {
        amount: requireEnv("PRICE_ATOMIC"),
        asset: requireEnv("EVM_ASSET"),
        extra: { name: requireEnv("EVM_ASSET_NAME"), version: requireEnv("EVM_ASSET_VERSION") },
      }
    : "$0.001";

const timeoutSeconds = process.env.FACILITATOR_TIMEOUT_SECONDS;
const facilitatorConfig = timeoutSeconds
  ? { url: facilitatorUrl, timeoutMs: Math.round(Number(timeoutSeconds) * 1000) }
  : { url: facilitatorUrl };
const resourceServer = new x402ResourceServer(new HTTPFacilitatorClient(facilitatorConfig));
registerExactEvmScheme(resourceServer);

const routes = Object.fromEntries(
  paths.map((path) => [
    `GET ${path}`,
    {
      accepts: { scheme: "exact", network, payTo, price },
      description: "x402sim conformance target",
      mimeType: "application/json",
    },
  ]),
);

const app = express();
let server;
app.get("/health", (_req, res) => {
  res.json({ status: "ok" });
});
app.post("/close", (_req, res) => {
  res.json({ status: "closing" });
  res.on("finish", () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
});
app.use(paymentMiddleware(routes, resourceServer));
app.get(paths[0], (_req, res) => {
  res.json({ resource: paths[0], paid: true });
});
app.get(paths[1], (_req, res) => {
  res.json({ resource: paths[1], paid: true });
});
app.get(paths[2], (_req, res) => {
  res.status(500).json({ error: "the handler failed" });
});
app.get(paths[3], (_req, res) => {
  res.redirect(303, paths[0]);
});

server = listen(app, port, "Server listening");
