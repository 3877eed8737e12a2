/**
 * Steps 1–2: calls student_service once through the registry and prints the response JSON
 * (exit 0), or the go-micro error JSON (exit 1).
 *   npx tsx examples/student/client.ts [name] [--registry=mdns]
 */
import { toJson } from "@bufbuild/protobuf";
import { MicroError, Service, createClient, runMain } from "../../src/index.ts";
import { StudentManager, StudentSchema } from "./gen/student_pb.ts";

const service = new Service({ name: "student_client" });
// runMain: a bad flag is one line and exit 2, a failed start one line and exit 1.
await runMain(async () => {
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
});
