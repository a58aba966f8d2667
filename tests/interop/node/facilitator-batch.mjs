// A TypeScript x402 facilitator for batch-settlement: x402Facilitator from @x402/core with the
// @x402/evm batch-settlement facilitator scheme, settling through viem on the chain at EVM_RPC_URL,
// behind a small express app. Given an authorizer (AUTHORIZER_PRIVATE_KEY), its /supported names that
// address as receiverAuthorizer and it signs the claims and refunds a server sends unsigned.
//
// Environment: PORT, EVM_PRIVATE_KEY (the facilitator's key; it pays the transactions' gas),
// AUTHORIZER_PRIVATE_KEY, EVM_NETWORK (eip155:<id>), EVM_RPC_URL, optional CONFIRMATION_TIMEOUT_MS
// (default 30000). Endpoints and readiness line as facilitator.mjs.

import express from "express";
import { x402Facilitator } from "@x402/core/facilitator";
import { toFacilitatorEvmSigner } from "@x402/evm";
import { BatchSettlementEvmScheme } from "@x402/evm/batch-settlement/facilitator";
import { createWalletClient, defineChain, http, nonceManager, publicActions } from "viem";
import { privateKeyToAccount } from "viem/accounts";

import { chainIdOf, listen, portFromEnv, privateKeyFromEnv, requireEnv } from "./env.mjs";

const port = portFromEnv();
const network = requireEnv("EVM_NETWORK");
const rpcUrl = requireEnv("EVM_RPC_URL");
const confirmationTimeoutMs = Number(process.env.CONFIRMATION_TIMEOUT_MS || "30000");

const chain = defineChain({
  id: chainIdOf(network),
  name: `x402sim ${network}`,
  nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
  rpcUrls: { default: { http: [rpcUrl] } },
  contracts: { multicall3: { address: "0xcA11bde05977b3631167028862bE2a173976CA11" } },
});
const account = privateKeyToAccount(privateKeyFromEnv(), { nonceManager });
const viemClient = createWalletClient({ account, chain, transport: http(rpcUrl), pollingInterval: 100 }).extend(
  publicActions,
);
const authorizer = privateKeyToAccount(privateKeyFromEnv("AUTHORIZER_PRIVATE_KEY"));

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
facilitator.register(network, new BatchSettlementEvmScheme(signer, authorizer));

function body(req, res) {
  const { paymentPayload, paymentRequirements } = req.body ?? {};
  if (!paymentPayload || !paymentRequirements) {
    res.status(400).json({ error: "body must hold paymentPayload and paymentRequirements" });
    return null;
  }
  return { paymentPayload, paymentRequirements };
}

const app = express();
app.use(express.json({ limit: "1mb" }));
for (const op of ["verify", "settle"]) {
  app.post(`/${op}`, async (req, res) => {
    const request = body(req, res);
    if (!request) return;
    try {
      const result = await facilitator[op](request.paymentPayload, request.paymentRequirements);
      console.error(`${op}: ${JSON.stringify(result)}`);
      res.json(result);
    } catch (error) {
      console.error(`${op} error:`, error);
      res.status(500).json({ error: error instanceof Error ? error.message : String(error) });
    }
  });
}
app.get("/supported", (_req, res) => res.json(facilitator.getSupported()));
app.get("/health", (_req, res) => res.json({ status: "ok", facilitator: "typescript", network }));

listen(app, port, "Facilitator listening");
