/**
 * Steps 1–2: calls student_service once through the registry and prints the response JSON
 * (exit 0), or the go-micro error JSON (exit 1).
 *   npx tsx examples/student/client.ts [name] [--registry=mdns]
 */
import { MicroError, Service } from "../../src/index.ts";

const service = new Service({ name: "student_client" });
service.init();
const name = service.args[0] ?? "davie";

let exitCode = 0;
try {
  const student = await service.call("student_service", "StudentManager.GetStudent", { name });
  console.log(JSON.stringify(student));
} catch (err) {
  console.log(JSON.stringify(MicroError.from(err, "go.micro.client")));
  exitCode = 1;
}
await service.stop();
process.exit(exitCode);
