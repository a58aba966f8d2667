// An @x402/express resource server selling Permit2 and upto routes of ASSET, paid to EVM_PAYEE_ADDRESS
// on EVM_NETWORK through the HTTP facilitator at FACILITATOR_URL:
//
//   GET /p2          exact through Permit2 for EXACT_PRICE, no extension (the payer must have approved)
//   GET /p2-eip2612  the same, declaring eip2612GasSponsoring
//   GET /p2-erc20    the same, declaring erc20ApprovalGasSponsoring (no EIP-712 name and version in
//                    extra, as the x402 e2e server declares it)
//   GET /upto        upto for at most UPTO_MAX, charged the `charge` query parameter (default: the
//                    maximum) through the SDK's setSettlementOverrides
//
// Environment: PORT, FACILITATOR_URL, EVM_PAYEE_ADDRESS, EVM_NETWORK, ASSET, ASSET_NAME, ASSET_VERSION,
// EXACT_PRICE and UPTO_MAX (atomic units). Prints "Server listening on http://127.0.0.1:<port>".

import express from "express";
import { HTTPFacilitatorClient } from "@x402/core/server";
import { ExactEvmScheme } from "@x402/evm/exact/server";
import { UptoEvmScheme } from "@x402/evm/upto/server";
import {
  declareEip2612GasSponsoringExtension,
  declareErc20ApprovalGasSponsoringExtension,
} from "@x402/extensions";
import {
  paymentMiddlewareFromHTTPServer,
  setSettlementOverrides,
  x402HTTPResourceServer,
  x402ResourceServer,
} from "@x402/express";

import { chainIdOf, listen, portFromEnv, requireEnv } from "./env.mjs";

const port = portFromEnv();
const facilitatorUrl = requireEnv("FACILITATOR_URL");
const payTo = requireEnv("EVM_PAYEE_ADDRESS");
const network = requireEnv("EVM_NETWORK");
const asset = requireEnv("ASSET");
const named = {
  name: requireEnv("ASSET_NAME"),
  version: requireEnv("ASSET_VERSION"),
  assetTransferMethod: "permit2",
};
const exactPrice = requireEnv("EXACT_PRICE");
const uptoMax = requireEnv("UPTO_MAX");
chainIdOf(network);

const resourceServer = new x402ResourceServer(new HTTPFacilitatorClient({ url: facilitatorUrl }));
resourceServer.register(network, new ExactEvmScheme());
resourceServer.register(network, new UptoEvmScheme());

function route(scheme, amount, extra, extensions) {
  return {
    accepts: { scheme, network, payTo, price: { amount, asset, extra }, maxTimeoutSeconds: 300 },
    mimeType: "application/json",
    ...(extensions ? { extensions } : {}),
  };
}

const routes = {
  "GET /p2": route("exact", exactPrice, named),
  "GET /p2-eip2612": route("exact", exactPrice, named, declareEip2612GasSponsoringExtension()),
  "GET /p2-erc20": route(
    "exact",
    exactPrice,
    { assetTransferMethod: "permit2" },
    declareErc20ApprovalGasSponsoringExtension(),
  ),
  "GET /upto": route("upto", uptoMax, named, declareEip2612GasSponsoringExtension()),
};
const httpServer = new x402HTTPResourceServer(resourceServer, routes);
try {
  await httpServer.initialize();
} catch (error) {
  console.error(`cannot initialize against the facilitator at ${facilitatorUrl}: ${error.message}`);
  process.exit(1);
}

const app = express();
app.use(paymentMiddlewareFromHTTPServer(httpServer, undefined, undefined, false));
for (const path of ["/p2", "/p2-eip2612", "/p2-erc20"]) {
  app.get(path, (_req, res) => res.json({ paid: true }));
}
app.get("/upto", (req, res) => {
  if (req.query.charge !== undefined) setSettlementOverrides(res, { amount: String(req.query.charge) });
  res.json({ paid: true, metered: req.query.charge ?? null });
});

listen(app, port, "Server listening");
