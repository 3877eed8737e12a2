// A plain JavaScript user whose program has a flag of its own (--port) next to tsmicro's.
import { Service, runMain } from "tsmicro";

const service = new Service({ name: "mjs.user", registry: "memory", broker: "memory", handleSignals: false });

await runMain(async () => {
  service.init(process.argv.slice(2), { allowUnknown: true });
  service.handle("Echo.Call", (req) => req);
  const received = new Promise((resolve) => service.subscribe("mjs.events", resolve));
  await service.start();
  const echoed = await service.call("mjs.user", "Echo.Call", { args: service.args });
  await service.publish("mjs.events", { hello: "world" });
  console.log(JSON.stringify({ echoed, event: await received, registry: service.options().registry }));
  await service.stop();
});
