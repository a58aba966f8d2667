// An x402Facilitator (@x402/core) with the @x402/evm exact, upto and batch-settlement schemes and both
// gas-sponsoring extensions over viem, as a conformance target following the official x402 e2e
// harness's environment contract.
//
// Environment: PORT, EVM_NETWORK (eip155:<id>), EVM_RPC_URL, EVM_PRIVATE_KEY (or
// FACILITATOR_EVM_PRIVATE_KEY; it pays the gas).
// Endpoints: POST /verify, POST /settle ({x402Version, paymentPayload, paymentRequirements}; a body
// without both is 400, an error the SDK throws is 500 {error}), GET /supported, GET /health,
// POST /close (exit 0). Prints "Facilitator listening on http://127.0.0.1:<port>" when ready.
//
// The exact scheme (EIP-3009 and Permit2) is registered with the SDK's helper for EVM_NETWORK, the
// upto scheme over the same signer, the batch-settlement scheme over the same signer with the
// facilitator's own account as receiver authorizer (then /supported names its address as
// receiverAuthorizer, and the facilitator signs the claims and refunds a server sends unsigned; the
// harness hands a facilitator one key), and both gas-sponsoring extensions as the official e2e
// facilitator registers them. The SDK leaves relaying a sponsored ERC-20 approval to the operator (a
// sendTransactions signer): here, one transaction after the other and each waited for, it sends the
// payer the ether the approval's gas may cost (gas * maxFeePerGas, less what it holds) from the
// facilitator's own account, broadcasts the approval, then sends the settlement. The chain is viem's own definition
// when it knows the id (Base Sepolia, Base), with its RPC URL replaced by EVM_RPC_URL; for another id
// (the local eip155:31337) one is defined (id, RPC URL, Multicall3 at its canonical address). The
// account uses viem's nonceManager, and receipts are polled every 100 ms (the harness chain mines a
// block per transaction; viem's default polls every few seconds).

import express from "express";
import { x402Facilitator } from "@x402/core/facilitator";
import { toFacilitatorEvmSigner } from "@x402/evm";
import { registerExactEvmScheme } from "@x402/evm/exact/facilitator";
import { UptoEvmScheme } from "@x402/evm/upto/facilitator";
import { BatchSettlementEvmScheme } from "@x402/evm/batch-settlement/facilitator";
import { EIP2612_GAS_SPONSORING, createErc20ApprovalGasSponsoringExtension } from "@x402/extensions";
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
import { base, baseSepolia } from "viem/chains";

import { chainIdOf, listen, portFromEnv, privateKeyFromEnv, requireEnv } from "./env.mjs";

const MULTICALL3 = "0xcA11bde05977b3631167028862bE2a173976CA11";

const port = portFromEnv();
const network = requireEnv("EVM_NETWORK");
const rpcUrl = requireEnv("EVM_RPC_URL");
const chainId = chainIdOf(network);
const keyName = process.env.EVM_PRIVATE_KEY ? "EVM_PRIVATE_KEY" : "FACILITATOR_EVM_PRIVATE_KEY";

const known = [base, baseSepolia].find((chain) => chain.id === chainId);
const chain = known
  ? { ...known, rpcUrls: { default: { http: [rpcUrl] } } }
  : defineChain({
      id: chainId,
      name: `x402sim ${network}`,
      nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
      rpcUrls: { default: { http: [rpcUrl] } },
      contracts: { multicall3: { address: MULTICALL3 } },
    });
const account = privateKeyToAccount(privateKeyFromEnv(keyName), { nonceManager });
const viemClient = createWalletClient({
  account,
  chain,
  transport: http(rpcUrl),
  pollingInterval: 100,
}).extend(publicActions);

const signer = toFacilitatorEvmSigner({
  address: account.address,
  readContract: (args) => viemClient.readContract({ ...args, args: args.args || [] }),
  verifyTypedData: (args) => viemClient.verifyTypedData(args),
  writeContract: (args) => viemClient.writeContract({ ...args, args: args.args || [] }),
  sendTransaction: (args) => viemClient.sendTransaction(args),
  waitForTransactionReceipt: (args) => viemClient.waitForTransactionReceipt(args),
  getCode: (args) => viemClient.getCode(args),
});

async function mined(hash) {
  const receipt = await viemClient.waitForTransactionReceipt({ hash });
  if (receipt.status !== "success") throw new Error(`transaction_failed: ${hash}`);
  return hash;
}

async function fundApprovalGas(raw) {
  const parsed = parseTransaction(raw);
  const payer = await recoverTransactionAddress({ serializedTransaction: raw });
  const cost = (parsed.gas ?? 70000n) * (parsed.maxFeePerGas ?? 1000000000n);
  const balance = await viemClient.getBalance({ address: payer });
  if (balance < cost) await mined(await viemClient.sendTransaction({ to: payer, value: cost - balance }));
}

const relay = {
  ...signer,
  sendTransactions: async (transactions) => {
    const hashes = [];
    for (const tx of transactions) {
      if (typeof tx === "string") {
        await fundApprovalGas(tx);
        hashes.push(await mined(await viemClient.sendRawTransaction({ serializedTransaction: tx })));
      } else {
        hashes.push(await mined(await viemClient.sendTransaction(tx)));
      }
    }
    return hashes;
  },
};

const facilitator = new x402Facilitator();
registerExactEvmScheme(facilitator, { signer, networks: network });
facilitator.register(network, new UptoEvmScheme(signer));
const authorizer = privateKeyToAccount(privateKeyFromEnv(keyName));
facilitator.register(network, new BatchSettlementEvmScheme(signer, authorizer));
facilitator.registerExtension(EIP2612_GAS_SPONSORING);
facilitator.registerExtension(createErc20ApprovalGasSponsoringExtension(relay));

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
let server;
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
    res.json(await facilitator.settle(request.paymentPayload, request.paymentRequirements));
  } catch (error) {
    failed(res, "settle", error);
  }
});

app.get("/supported", (_req, res) => {
  res.json(facilitator.getSupported());
});

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

server = listen(app, port, "Facilitator listening");
