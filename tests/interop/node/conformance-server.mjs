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
//
// PERMIT2_PATH and UPTO_PATH (x402sim's additions), when set, add an exact route paid with Permit2
// and an upto route whose maximum is PRICE_ATOMIC of EVM_ASSET (with EVM_ASSET_NAME and
// EVM_ASSET_VERSION) and whose handler charges the `charge` query parameter through the SDK's
// setSettlementOverrides; the upto scheme is registered for eip155:* beside the exact one. The
// Permit2 route declares each gas-sponsoring extension the facilitator lists in /supported (read
// once at start; none when it cannot be read).
//
// BATCH_PATH (x402sim's addition), when set, adds a batch-settlement route at PRICE_ATOMIC per request
// of EVM_ASSET (with EVM_ASSET_NAME and EVM_ASSET_VERSION), paid to the payee, through the SDK's
// batch-settlement server scheme (registered for eip155:*) in its default configuration: its channels
// in the SDK's in-memory storage, no receiver authorizer of its own (so the offer's receiverAuthorizer
// is the one the facilitator's /supported names, and the facilitator signs the claims and refunds),
// the least withdraw delay the contract allows, the SDK's default minDeposit. The SDK's channel
// manager is not run: this server claims and settles nothing on its own.

import express from "express";
import { HTTPFacilitatorClient } from "@x402/core/server";
import { registerExactEvmScheme } from "@x402/evm/exact/server";
import { UptoEvmScheme } from "@x402/evm/upto/server";
import { BatchSettlementEvmScheme } from "@x402/evm/batch-settlement/server";
import {
  declareEip2612GasSponsoringExtension,
  declareErc20ApprovalGasSponsoringExtension,
} from "@x402/extensions";
import { paymentMiddleware, setSettlementOverrides, x402ResourceServer } from "@x402/express";

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
resourceServer.register("eip155:*", new UptoEvmScheme());

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

const permit2Path = process.env.PERMIT2_PATH || "";
const uptoPath = process.env.UPTO_PATH || "";
const batchPath = process.env.BATCH_PATH || "";

function permit2Price() {
  return {
    amount: requireEnv("PRICE_ATOMIC"),
    asset: requireEnv("EVM_ASSET"),
    extra: {
      name: requireEnv("EVM_ASSET_NAME"),
      version: requireEnv("EVM_ASSET_VERSION"),
      assetTransferMethod: "permit2",
    },
  };
}

async function listedExtensions() {
  try {
    await resourceServer.initialize();
  } catch (error) {
    console.error(`cannot read the facilitator's /supported: ${error.message}`);
    return [];
  }
  return resourceServer.getFacilitatorExtensions(2, network, "exact");
}

if (permit2Path) {
  const listed = await listedExtensions();
  const declarations = {
    eip2612GasSponsoring: declareEip2612GasSponsoringExtension,
    erc20ApprovalGasSponsoring: declareErc20ApprovalGasSponsoringExtension,
  };
  const extensions = Object.assign(
    {},
    ...Object.entries(declarations)
      .filter(([key]) => listed.includes(key))
      .map(([, declare]) => declare()),
  );
  routes[`GET ${permit2Path}`] = {
    accepts: { scheme: "exact", network, payTo, price: permit2Price() },
    description: "x402sim conformance target (Permit2)",
    mimeType: "application/json",
    ...(Object.keys(extensions).length ? { extensions } : {}),
  };
}
if (uptoPath) {
  routes[`GET ${uptoPath}`] = {
    accepts: { scheme: "upto", network, payTo, price: permit2Price() },
    description: "x402sim conformance target (upto)",
    mimeType: "application/json",
  };
}

if (batchPath) {
  resourceServer.register("eip155:*", new BatchSettlementEvmScheme(payTo));
  const { amount, asset, extra } = permit2Price();
  routes[`GET ${batchPath}`] = {
    accepts: {
      scheme: "batch-settlement",
      network,
      payTo,
      price: { amount, asset, extra: { name: extra.name, version: extra.version } },
    },
    description: "x402sim conformance target (batch-settlement)",
    mimeType: "application/json",
  };
}

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
if (permit2Path) {
  app.get(permit2Path, (_req, res) => {
    res.json({ resource: permit2Path, paid: true });
  });
}
if (uptoPath) {
  app.get(uptoPath, (req, res) => {
    if (req.query.charge !== undefined) setSettlementOverrides(res, { amount: String(req.query.charge) });
    res.json({ resource: uptoPath, paid: true });
  });
}

if (batchPath) {
  app.get(batchPath, (_req, res) => {
    res.json({ resource: batchPath, paid: true });
  });
}

server = listen(app, port, "Server listening");
