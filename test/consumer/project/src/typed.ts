// Types a user reaches for, under the strictest settings: errors, options, plugin subpaths.
import { MicroError, Service, StartupError, type ServiceOptions } from "tsmicro";
import MemoryBroker from "tsmicro/broker/memory";
import MemoryRegistry from "tsmicro/registry/memory";

const options: ServiceOptions = { name: "typed", registry: new MemoryRegistry(), broker: new MemoryBroker() };
const service = new Service(options);
service.handle("Typed.Fail", () => {
  throw new MicroError("typed", 409, "conflict");
});
try {
  await service.start();
  await service.call("typed", "Typed.Fail", {});
} catch (err) {
  if (err instanceof StartupError) throw err;
  console.log(err instanceof MicroError ? JSON.stringify(err) : String(err));
} finally {
  await service.stop();
}
