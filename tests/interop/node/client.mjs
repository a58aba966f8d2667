// An @x402/fetch client: GET RESOURCE_URL, paying once with the exact EVM scheme (EIP-3009) signed by
// the viem account of EVM_PRIVATE_KEY.
//
// Environment: EVM_PRIVATE_KEY, RESOURCE_URL, EVM_NETWORK (eip155:<id>), ASSET (token address),
// optional MAX_AMOUNT_PER_PAYMENT (atomic units; omitted = no cap for ASSET).
// The last stdout line is a JSON verdict {success, status_code, data, payment_response}, with
// payment_response the decoded PAYMENT-RESPONSE header (null when absent). Exit code 0 on success.
//
// Spend controls: by default the SDK client only pays assets it knows as a network default (USDC
// on Base and friends) and caps them at $1; a token on a local chain is unknown to it, so every
// offer would be refused. The token is opted in explicitly for this one network with
// spendControls.allowedAssets (and an atomic cap), rather than switching spend controls off.
// The scheme is registered for EVM_NETWORK only (no "eip155:*" wildcard).

import { decodePaymentResponseHeader, wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { registerExactEvmScheme } from "@x402/evm/exact/client";
import { privateKeyToAccount } from "viem/accounts";

import { chainIdOf, privateKeyFromEnv, requireEnv } from "./env.mjs";

const account = privateKeyToAccount(privateKeyFromEnv());
const url = requireEnv("RESOURCE_URL");
const network = requireEnv("EVM_NETWORK");
const asset = requireEnv("ASSET");
const maxAmount = process.env.MAX_AMOUNT_PER_PAYMENT || undefined;
chainIdOf(network);

const client = new x402Client();
registerExactEvmScheme(client, { signer: account, networks: [network] });
client.setSpendControls({
  allowedAssets: [{ network, asset, ...(maxAmount ? { maxAmountPerPayment: maxAmount } : {}) }],
});
const fetchWithPayment = wrapFetchWithPayment(fetch, client);

function verdict(fields) {
  console.log(
    JSON.stringify({ success: false, status_code: null, data: null, payment_response: null, ...fields }),
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
  const paymentResponse = header ? decodePaymentResponseHeader(header) : null;
  verdict({
    success: response.ok,
    status_code: response.status,
    data,
    payment_response: paymentResponse,
    payer: account.address,
  });
  process.exitCode = response.ok ? 0 : 1;
} catch (error) {
  console.error(error);
  verdict({ error: error instanceof Error ? error.message : String(error), payer: account.address });
  process.exitCode = 1;
}
