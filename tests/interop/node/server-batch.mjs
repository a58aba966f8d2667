// An @x402/express server selling GET /feed through batch-settlement channels for PRICE atomic units
// of ASSET, paid to EVM_PAYEE_ADDRESS, verified and settled by the facilitator at FACILITATOR_URL. The
// SDK's channel manager claims and settles only when told: POST /claim-now answers its claim()
// ([{vouchers, transaction}]), POST /settle-now its settle() ({transaction}).
//
// Environment: PORT, FACILITATOR_URL, EVM_PAYEE_ADDRESS, EVM_NETWORK, ASSET, ASSET_NAME, ASSET_VERSION,
// PRICE, WITHDRAW_DELAY (seconds). Ready line: "Server listening on ...".

import express from "express";
import { HTTPFacilitatorClient } from "@x402/core/server";
import { BatchSettlementEvmScheme } from "@x402/evm/batch-settlement/server";
import { paymentMiddlewareFromHTTPServer, x402HTTPResourceServer, x402ResourceServer } from "@x402/express";

import { chainIdOf, listen, portFromEnv, requireEnv } from "./env.mjs";

const port = portFromEnv();
const facilitatorUrl = requireEnv("FACILITATOR_URL");
const payTo = requireEnv("EVM_PAYEE_ADDRESS");
const network = requireEnv("EVM_NETWORK");
const asset = requireEnv("ASSET");
const extra = { name: requireEnv("ASSET_NAME"), version: requireEnv("ASSET_VERSION") };
const price = requireEnv("PRICE");
chainIdOf(network);

const facilitatorClient = new HTTPFacilitatorClient({ url: facilitatorUrl });
const scheme = new BatchSettlementEvmScheme(payTo, { withdrawDelay: Number(requireEnv("WITHDRAW_DELAY")) });
const resourceServer = new x402ResourceServer(facilitatorClient);
resourceServer.register(network, scheme);
const routes = {
  "GET /feed": {
    accepts: { scheme: "batch-settlement", network, payTo, price: { amount: price, asset, extra } },
    mimeType: "application/json",
  },
};
const httpServer = new x402HTTPResourceServer(resourceServer, routes);
try {
  await httpServer.initialize();
} catch (error) {
  console.error(`cannot initialize against the facilitator at ${facilitatorUrl}: ${error.message}`);
  process.exit(1);
}
const manager = scheme.createChannelManager(facilitatorClient, network, asset);

const app = express();
app.use(paymentMiddlewareFromHTTPServer(httpServer, undefined, undefined, false));
app.get("/feed", (_req, res) => res.json({ paid: true }));

function answer(res, work) {
  work
    .then((value) => res.json(JSON.parse(JSON.stringify(value, (k, v) => (typeof v === "bigint" ? v.toString() : v)))))
    .catch((error) => {
      console.error(error);
      res.status(500).json({ error: error instanceof Error ? error.message : String(error) });
    });
}
app.post("/claim-now", (_req, res) => answer(res, manager.claim()));
app.post("/settle-now", (_req, res) => answer(res, manager.settle()));

listen(app, port, "Server listening");
