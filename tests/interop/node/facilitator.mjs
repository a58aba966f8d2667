// A TypeScript x402 facilitator: x402Facilitator from @x402/core with the @x402/evm exact scheme,
// settling through viem on the chain at EVM_RPC_URL, behind a small express app.
//
// Environment: PORT, EVM_PRIVATE_KEY (the facilitator's key; it pays the gas), EVM_NETWORK
// (eip155:<id>), EVM_RPC_URL, optional CHAIN_ID (must agree with EVM_NETWORK) and
// CONFIRMATION_TIMEOUT_MS (receipt wait, default 30000).
// Endpoints: POST /verify, POST /settle ({x402Version, paymentPayload, paymentRequirements}),
// GET /supported, GET /health. Prints "Facilitator listening on http://127.0.0.1:<port>" when ready.
//
// What a local chain needs: viem knows no chain with this id, so one is defined here (id, RPC URL,
// Multicall3 at its canonical address); the exact scheme is registered for EVM_NETWORK alone, for
// x402 v2 only (the v1 registration helper would add every public EVM network by name). At start
// the node's eth_chainId is checked against EVM_NETWORK, so a wrong RPC URL fails before readiness.

import express from "express";
import { x402Facilitator } from "@x402/core/facilitator";
import { toFacilitatorEvmSigner } from "@x402/evm";
import { ExactEvmScheme } from "@x402/evm/exact/facilitator";
import { createWalletClient, defineChain, http, nonceManager, publicActions } from "viem";
import { privateKeyToAccount } from "viem/accounts";

import { chainIdOf, listen, portFromEnv, privateKeyFromEnv, requireEnv } from "./env.mjs";

const MULTICALL3 = "0xcA11bde05977b3631167028862bE2a173976CA11";

const port = portFromEnv();
const network = requireEnv("EVM_NETWORK");
const rpcUrl = requireEnv("EVM_RPC_URL");
const chainId = chainIdOf(network);
if (process.env.CHAIN_ID && Number(process.env.CHAIN_ID) !== chainId) {
  console.error(`CHAIN_ID ${process.env.CHAIN_ID} disagrees with EVM_NETWORK ${network}`);
  process.exit(2);
}
const confirmationTimeoutMs = Number(process.env.CONFIRMATION_TIMEOUT_MS || "30000");

const chain = defineChain({
  id: chainId,
  name: `x402sim ${network}`,
  nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
  rpcUrls: { default: { http: [rpcUrl] } },
  contracts: { multicall3: { address: MULTICALL3 } },
});
const account = privateKeyToAccount(privateKeyFromEnv(), { nonceManager });
// The local chain mines a block per transaction: poll receipts often instead of every 4 s.
const viemClient = createWalletClient({
  account,
  chain,
  transport: http(rpcUrl),
  pollingInterval: 100,
}).extend(publicActions);

const remoteChainId = await viemClient.getChainId().catch((error) => {
  console.error(`cannot reach the chain at ${rpcUrl}: ${error.shortMessage || error.message}`);
  process.exit(1);
});
if (remoteChainId !== chainId) {
  console.error(`the chain at ${rpcUrl} has id ${remoteChainId}, EVM_NETWORK says ${chainId}`);
  process.exit(1);
}

const signer = toFacilitatorEvmSigner(
  {
    address: account.address,
    readContract: (args) => viemClient.readContract({ ...args, args: args.args || [] }),
    verifyTypedData: (args) => viemClient.verifyTypedData(args),
    writeContract: (args) => viemClient.writeContract({ ...args, args: args.args || [] }),
    sendTransaction: (args) => viemClient.sendTransaction(args),
    waitForTransactionReceipt: (args) => viemClient.waitForTransactionReceipt(args),
    getCode: (args) => viemClient.getCode(args),
  },
  { confirmationTimeoutMs },
);

const facilitator = new x402Facilitator();
facilitator.register(network, new ExactEvmScheme(signer));

function readRequest(req, res) {
  const { paymentPayload, paymentRequirements } = req.body ?? {};
  if (!paymentPayload || !paymentRequirements) {
    res.status(400).json({ error: "body must hold paymentPayload and paymentRequirements" });
    return null;
  }
  return { paymentPayload, paymentRequirements };
}

function failed(res, what, error) {
  console.error(`${what} error:`, error);
  res.status(500).json({ error: error instanceof Error ? error.message : String(error) });
}

const app = express();
app.use(express.json({ limit: "1mb" }));

app.post("/verify", async (req, res) => {
  const request = readRequest(req, res);
  if (!request) return;
  try {
    res.json(await facilitator.verify(request.paymentPayload, request.paymentRequirements));
  } catch (error) {
    failed(res, "verify", error);
  }
});

app.post("/settle", async (req, res) => {
  const request = readRequest(req, res);
  if (!request) return;
  try {
    const result = await facilitator.settle(request.paymentPayload, request.paymentRequirements);
    console.error(`settle: success=${result.success} tx=${result.transaction} ${result.errorReason ?? ""}`);
    res.json(result);
  } catch (error) {
    failed(res, "settle", error);
  }
});

app.get("/supported", (_req, res) => {
  res.json(facilitator.getSupported());
});

app.get("/health", (_req, res) => {
  res.json({ status: "ok", facilitator: "typescript", network, address: account.address });
});

listen(app, port, "Facilitator listening");
