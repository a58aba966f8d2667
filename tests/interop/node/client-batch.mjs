// An @x402/fetch client paying batch-settlement, kept alive for a whole channel life: its channels
// stay in the scheme's in-memory storage between commands. Signed by the viem account of
// EVM_PRIVATE_KEY. With READS_CHAIN=1 the signer also reads the chain at EVM_RPC_URL
// (toClientEvmSigner with a viem public client): only then does the scheme recover a channel it has
// no record of and check a corrective 402 (the scheme's own rpcUrl option serves the gas-sponsoring
// extensions only).
//
// Environment: EVM_PRIVATE_KEY, EVM_NETWORK (eip155:<id>), ASSET (token address), EVM_RPC_URL,
// optional READS_CHAIN (1), MAX_AMOUNT_PER_PAYMENT (atomic units).
// Prints "Client ready", then answers one JSON command per stdin line with one JSON line on stdout:
//   {"op": "get", "url": U, "n": N}      -> {"results": [{status_code, payment_response, payment_required, payment}]}
//   {"op": "refund", "url": U, "amount": "A"} -> {"settle": <SettleResponse>} or {"error": message}
// payment_response and payment_required are the decoded headers (null when absent), payment the inner payload the
// client created for that request (null when none).

import { createInterface } from "node:readline";

import { decodePaymentResponseHeader, wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { toClientEvmSigner } from "@x402/evm";
import { BatchSettlementEvmScheme } from "@x402/evm/batch-settlement/client";
import { createPublicClient, defineChain, http } from "viem";
import { privateKeyToAccount } from "viem/accounts";

import { chainIdOf, privateKeyFromEnv, requireEnv } from "./env.mjs";

const account = privateKeyToAccount(privateKeyFromEnv());
const network = requireEnv("EVM_NETWORK");
const asset = requireEnv("ASSET");
const rpcUrl = requireEnv("EVM_RPC_URL");
const maxAmount = process.env.MAX_AMOUNT_PER_PAYMENT || undefined;
const chain = defineChain({
  id: chainIdOf(network),
  name: `x402sim ${network}`,
  nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
  rpcUrls: { default: { http: [rpcUrl] } },
});

const signer =
  process.env.READS_CHAIN === "1"
    ? toClientEvmSigner(account, createPublicClient({ chain, transport: http(rpcUrl) }))
    : account;
const scheme = new BatchSettlementEvmScheme(signer);
const client = new x402Client();
client.register(network, scheme);
client.setSpendControls({
  allowedAssets: [{ network, asset, ...(maxAmount ? { maxAmountPerPayment: maxAmount } : {}) }],
});
let payment = null;
client.onAfterPaymentCreation(async (context) => {
  payment = context.paymentPayload.payload;
});
const fetchWithPayment = wrapFetchWithPayment(fetch, client);

function line(value) {
  console.log(JSON.stringify(value, (key, v) => (typeof v === "bigint" ? v.toString() : v)));
}

async function get(url) {
  payment = null;
  const response = await fetchWithPayment(url, { method: "GET" });
  await response.text();
  const header = response.headers.get("payment-response");
  const required = response.headers.get("payment-required");
  return {
    status_code: response.status,
    payment_response: header ? decodePaymentResponseHeader(header) : null,
    payment_required: required ? JSON.parse(Buffer.from(required, "base64").toString("utf8")) : null,
    payment,
  };
}

async function run(command) {
  if (command.op === "get") {
    const results = [];
    for (let i = 0; i < (command.n ?? 1); i++) results.push(await get(command.url));
    return { results };
  }
  if (command.op === "refund") {
    return { settle: await scheme.refund(command.url, command.amount ? { amount: command.amount } : {}) };
  }
  return { error: `unknown op ${JSON.stringify(command.op)}` };
}

console.log("Client ready");
for await (const text of createInterface({ input: process.stdin })) {
  try {
    line(await run(JSON.parse(text)));
  } catch (error) {
    console.error(error);
    line({ error: error instanceof Error ? error.message : String(error) });
  }
}
