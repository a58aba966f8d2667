// An @x402/fetch client paying exact (EIP-3009 or Permit2) and upto: GET RESOURCE_URL, paying once,
// signed by the viem account of EVM_PRIVATE_KEY. The schemes are given EVM_RPC_URL, so the client can
// read its Permit2 allowance and EIP-2612 nonce, and signs a gas-sponsoring extension the server
// declares when its allowance is short (EIP-2612 first, then the ERC-20 approval transaction).
//
// Environment: EVM_PRIVATE_KEY, RESOURCE_URL, EVM_NETWORK (eip155:<id>), EVM_RPC_URL, ASSET (token
// address), optional MAX_AMOUNT_PER_PAYMENT (atomic units). The last stdout line is a JSON verdict
// {success, status_code, data, payment_response, payment_required, payment}: the decoded
// PAYMENT-RESPONSE and PAYMENT-REQUIRED headers (null when absent) and the payment payload the client
// created (null when none). Exit code 0 on a 2xx answer.

import { decodePaymentResponseHeader, wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { UptoEvmScheme } from "@x402/evm/upto/client";
import { privateKeyToAccount } from "viem/accounts";

import { chainIdOf, privateKeyFromEnv, requireEnv } from "./env.mjs";

const account = privateKeyToAccount(privateKeyFromEnv());
const url = requireEnv("RESOURCE_URL");
const network = requireEnv("EVM_NETWORK");
const rpcUrl = requireEnv("EVM_RPC_URL");
const asset = requireEnv("ASSET");
const maxAmount = process.env.MAX_AMOUNT_PER_PAYMENT || undefined;
chainIdOf(network);

const client = new x402Client();
client.register(network, new ExactEvmScheme(account, { rpcUrl }));
client.register(network, new UptoEvmScheme(account, { rpcUrl }));
client.setSpendControls({
  allowedAssets: [{ network, asset, ...(maxAmount ? { maxAmountPerPayment: maxAmount } : {}) }],
});
let payment = null;
client.onAfterPaymentCreation(async (context) => {
  payment = context.paymentPayload;
});
const fetchWithPayment = wrapFetchWithPayment(fetch, client);

function decoded(header) {
  return header ? JSON.parse(Buffer.from(header, "base64").toString("utf8")) : null;
}

function verdict(fields) {
  console.log(
    JSON.stringify(
      { success: false, status_code: null, data: null, payment_response: null, payment, ...fields },
      (key, value) => (typeof value === "bigint" ? value.toString() : value),
    ),
  );
}

try {
  const response = await fetchWithPayment(url, { method: "GET" });
  const text = await response.text();
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    data = text;
  }
  const header = response.headers.get("payment-response");
  verdict({
    success: response.ok,
    status_code: response.status,
    data,
    payment_response: header ? decodePaymentResponseHeader(header) : null,
    payment_required: decoded(response.headers.get("payment-required")),
    payer: account.address,
  });
  process.exitCode = response.ok ? 0 : 1;
} catch (error) {
  console.error(error);
  verdict({ error: error instanceof Error ? error.message : String(error), payer: account.address });
  process.exitCode = 1;
}
