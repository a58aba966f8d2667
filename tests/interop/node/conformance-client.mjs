// An @x402/fetch client as a conformance target, following the official x402 e2e harness's
// environment contract.
//
// Environment: RESOURCE_SERVER_URL, ENDPOINT_PATH, EVM_PRIVATE_KEY (or CLIENT_EVM_PRIVATE_KEY),
// EVM_NETWORK, EVM_RPC_URL. Makes one GET and prints one JSON line
// {success, data, status_code, payment_response} (payment_response the decoded PAYMENT-RESPONSE
// header, null when absent); exit code 0 on success, else 1.
//
// The exact scheme is registered with the SDK's helper (eip155:* and the v1 names; it pays EIP-3009
// and Permit2 offers alike) and the upto scheme for eip155:*, with the default spend controls. Both
// are given EVM_RPC_URL, which the SDK needs to read the allowance and EIP-2612 nonce it builds a
// declared gas-sponsoring extension from. On the local chain (eip155:31337) the SDK knows no default asset and would refuse
// every offer, and the harness names no token to the client, so there any asset is allowed
// (allowedAssets: true; the USD cap on the SDK's default assets still applies).
//
// The batch-settlement scheme is registered for eip155:* too, its signer the account with a viem
// public client reading the chain at EVM_RPC_URL (toClientEvmSigner): the SDK recovers a channel it
// has no record of, and checks a corrective 402, only with a signer that reads the chain (each run
// is a new process, its channels in the SDK's in-memory storage, so a channel an earlier run opened
// is read back from the chain). A deposit is the SDK's default size (the offer's minDeposit).

import { decodePaymentResponseHeader, wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { registerExactEvmScheme } from "@x402/evm/exact/client";
import { UptoEvmScheme } from "@x402/evm/upto/client";
import { toClientEvmSigner } from "@x402/evm";
import { BatchSettlementEvmScheme } from "@x402/evm/batch-settlement/client";
import { createPublicClient, defineChain, http } from "viem";
import { privateKeyToAccount } from "viem/accounts";

import { chainIdOf, privateKeyFromEnv, requireEnv } from "./env.mjs";

const LOCAL_NETWORK = "eip155:31337";

const keyName = process.env.EVM_PRIVATE_KEY ? "EVM_PRIVATE_KEY" : "CLIENT_EVM_PRIVATE_KEY";
const account = privateKeyToAccount(privateKeyFromEnv(keyName));
const url = requireEnv("RESOURCE_SERVER_URL").replace(/\/+$/, "") + requireEnv("ENDPOINT_PATH");
const network = requireEnv("EVM_NETWORK");

const client = new x402Client();
const rpcUrl = requireEnv("EVM_RPC_URL");
registerExactEvmScheme(client, { signer: account, schemeOptions: { rpcUrl } });
client.register("eip155:*", new UptoEvmScheme(account, { rpcUrl }));
const chain = defineChain({
  id: chainIdOf(network),
  name: `x402sim ${network}`,
  nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
  rpcUrls: { default: { http: [rpcUrl] } },
});
const reader = createPublicClient({ chain, transport: http(rpcUrl) });
client.register("eip155:*", new BatchSettlementEvmScheme(toClientEvmSigner(account, reader)));
if (network === LOCAL_NETWORK) {
  client.setSpendControls({ allowedAssets: true });
}
const fetchWithPayment = wrapFetchWithPayment(fetch, client);

function verdict(fields) {
  console.log(JSON.stringify({ success: false, data: null, status_code: null, payment_response: null, ...fields }));
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
    data,
    status_code: response.status,
    payment_response: header ? decodePaymentResponseHeader(header) : null,
  });
  process.exitCode = response.ok ? 0 : 1;
} catch (error) {
  console.error(error);
  verdict({ error: error instanceof Error ? error.message : String(error) });
  process.exitCode = 1;
}
