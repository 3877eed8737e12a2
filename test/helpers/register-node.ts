/**
 * A stand-in for a service process: registers one node and re-registers it every interval, as the
 * service lifecycle does, until killed. Prints "registered <node-id>" after each successful
 * register and "register failed: ..." (stderr) when the registry cannot be reached.
 *
 *   tsx test/helpers/register-node.ts <registry-uri> <service> <node-id> <ttl-seconds> <interval-seconds>
 */
import { createRegistry } from "../../src/cmd/create.ts";

const [uri, serviceName, nodeId, ttl, interval] = process.argv.slice(2);
if (!uri || !serviceName || !nodeId || !ttl || !interval) {
  console.error("usage: register-node.ts <registry-uri> <service> <node-id> <ttl-seconds> <interval-seconds>");
  process.exit(2);
}

const registry = await createRegistry(uri, { timeout: 1000 });
const service = {
  name: serviceName,
  version: "v1",
  metadata: { process: String(process.pid) },
  endpoints: [],
  nodes: [{ id: nodeId, address: "127.0.0.1:9", metadata: {} }],
};

async function register(): Promise<void> {
  try {
    await registry.register(service, { ttl: Number(ttl) });
    console.log(`registered ${nodeId}`);
  } catch (err) {
    console.error(`register failed: ${(err as Error).message}`);
  }
}

// One register at a time: a slow call during an outage must not pile up behind the timer.
for (;;) {
  await register();
  await new Promise((r) => setTimeout(r, Number(interval) * 1000));
}
