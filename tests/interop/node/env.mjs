// Shared helpers for the interop scripts: configuration comes only from environment variables,
// and every service listens on 127.0.0.1 only.

export const HOST = "127.0.0.1";

/** The value of `name`, or exit with a message naming the variable. */
export function requireEnv(name) {
  const value = process.env[name];
  if (value === undefined || value === "") {
    console.error(`${name} environment variable is required`);
    process.exit(2);
  }
  return value;
}

/** The port in PORT (0 is refused: the caller must know the port before it connects). */
export function portFromEnv() {
  const raw = requireEnv("PORT");
  const port = Number(raw);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    console.error(`PORT must be an integer in 1..65535, got ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return port;
}

/** The chain id of a CAIP-2 `eip155:<id>` network string. */
export function chainIdOf(network) {
  const match = /^eip155:(\d+)$/.exec(network);
  if (!match) {
    console.error(`EVM_NETWORK must look like eip155:<chain id>, got ${JSON.stringify(network)}`);
    process.exit(2);
  }
  return Number(match[1]);
}

/** A 0x-prefixed 32-byte hex private key. */
export function privateKeyFromEnv(name = "EVM_PRIVATE_KEY") {
  const raw = requireEnv(name);
  const key = raw.startsWith("0x") ? raw : `0x${raw}`;
  if (!/^0x[0-9a-fA-F]{64}$/.test(key)) {
    console.error(`${name} must be 32 bytes of hex`);
    process.exit(2);
  }
  return key;
}

/** Listen on 127.0.0.1:port, then print `readyLine` on stdout; exit cleanly on SIGTERM/SIGINT. */
export function listen(app, port, readyLine) {
  const server = app.listen(port, HOST, (error) => {
    if (error) {
      console.error(`cannot listen on ${HOST}:${port}: ${error.message}`);
      process.exit(1);
    }
    console.log(`${readyLine} on http://${HOST}:${port}`);
  });
  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  return server;
}
