// A TypeScript x402 facilitator for Permit2: x402Facilitator from @x402/core with the @x402/evm exact
// (EIP-3009 and Permit2) and upto schemes, and both gas-sponsoring extensions, settling through viem on
// the chain at EVM_RPC_URL, behind a small express app.
//
// Environment: PORT, EVM_PRIVATE_KEY (the facilitator's key; it pays the settlements' gas),
// FUNDER_PRIVATE_KEY (the operator's wallet that tops up payers' gas for the ERC-20 approval extension),
// EVM_NETWORK (eip155:<id>), EVM_RPC_URL, optional CONFIRMATION_TIMEOUT_MS (default 30000).
// Endpoints and readiness line as facilitator.mjs.
//
// The ERC-20 approval extension needs an operator-supplied sendTransactions (the SDK ships none): for
// a raw approval it funds the payer's gas deficit (gas * maxFeePerGas of the approval), broadcasts it,
// then sends the settle call, each waited for, in order, as the x402 e2e facilitator does. Funding
// comes from a separate wallet so the settling account's nonces stay the SDK's alone.

import express from "express";
import { x402Facilitator } from "@x402/core/facilitator";
import { toFacilitatorEvmSigner } from "@x402/evm";
import { ExactEvmScheme } from "@x402/evm/exact/facilitator";
import { UptoEvmScheme } from "@x402/evm/upto/facilitator";
import {
  EIP2612_GAS_SPONSORING,
  createErc20ApprovalGasSponsoringExtension,
} from "@x402/extensions";
import {
  createWalletClient,
  defineChain,
  http,
  nonceManager,
  parseTransaction,
  publicActions,
  recoverTransactionAddress,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";

import { chainIdOf, listen, portFromEnv, privateKeyFromEnv, requireEnv } from "./env.mjs";

const MULTICALL3 = "0xcA11bde05977b3631167028862bE2a173976CA11";

const port = portFromEnv();
const network = requireEnv("EVM_NETWORK");
const rpcUrl = requireEnv("EVM_RPC_URL");
const chainId = chainIdOf(network);
const confirmationTimeoutMs = Number(process.env.CONFIRMATION_TIMEOUT_MS || "30000");

const chain = defineChain({
  id: chainId,
  name: `x402sim ${network}`,
  nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
  rpcUrls: { default: { http: [rpcUrl] } },
  contracts: { multicall3: { address: MULTICALL3 } },
});
function wallet(key) {
  const account = privateKeyToAccount(key, { nonceManager });
  return createWalletClient({ account, chain, transport: http(rpcUrl), pollingInterval: 100 }).extend(
    publicActions,
  );
}
const viemClient = wallet(privateKeyFromEnv());
const funder = wallet(privateKeyFromEnv("FUNDER_PRIVATE_KEY"));
const account = viemClient.account;

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

async function mined(client, hash) {
  const receipt = await client.waitForTransactionReceipt({ hash });
  if (receipt.status !== "success") throw new Error(`transaction_failed: ${hash}`);
  return hash;
}

const gasTank = {
  ...signer,
  sendTransactions: async (transactions) => {
    const hashes = [];
    for (const tx of transactions) {
      if (typeof tx === "string") {
        const parsed = parseTransaction(tx);
        const payer = await recoverTransactionAddress({ serializedTransaction: tx });
        const cost = (parsed.gas ?? 70000n) * (parsed.maxFeePerGas ?? 1000000000n);
        const balance = await viemClient.getBalance({ address: payer });
        if (balance < cost) {
          const hash = await funder.sendTransaction({ to: payer, value: cost - balance });
          await mined(funder, hash);
          console.error(`funded ${payer} with ${cost - balance} wei: ${hash}`);
        }
        hashes.push(await mined(viemClient, await viemClient.sendRawTransaction({ serializedTransaction: tx })));
      } else {
        hashes.push(await mined(viemClient, await viemClient.sendTransaction(tx)));
      }
    }
    return hashes;
  },
};

const facilitator = new x402Facilitator();
facilitator.register(network, new ExactEvmScheme(signer));
facilitator.register(network, new UptoEvmScheme(signer));
facilitator.registerExtension(EIP2612_GAS_SPONSORING);
facilitator.registerExtension(createErc20ApprovalGasSponsoringExtension(gasTank));

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
