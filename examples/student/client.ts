/**
 * Steps 1–2: calls student_service once through the registry and prints the response JSON
 * (exit 0), or the go-micro error JSON (exit 1).
 *   npx tsx examples/student/client.ts [name] [--registry=mdns]
 */
import { toJson } from "@bufbuild/protobuf";
import { MicroError, Service, createClient } from "../../src/index.ts";
import { StudentManager, StudentSchema } from "./gen/student_pb.ts";

const service = new Service({ name: "student_client" });
service.init();
const name = service.args[0] ?? "davie";
// The generated StudentManager descriptor types the client: protobuf on the wire, a Student back.
const students = createClient(StudentManager, "student_service", service);

let exitCode = 0;
try {
  const student = await students.getStudent({ name });
  console.log(JSON.stringify(toJson(StudentSchema, student)));
} catch (err) {
  console.log(JSON.stringify(MicroError.from(err, "go.micro.client")));
  exitCode = 1;
}
await service.stop();
process.exit(exitCode);
