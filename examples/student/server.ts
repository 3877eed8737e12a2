/**
 * Step 1 of the walkthrough: student_service (v1.0.0) implements the StudentManager service of
 * proto/student.proto, served as the endpoint StudentManager.GetStudent.
 *   npx tsx examples/student/server.ts [--registry=mdns] [--register_ttl=10 --register_interval=5]
 */
import { create } from "@bufbuild/protobuf";
import { Service, notFound, runMain } from "../../src/index.ts";
import { StudentManager, StudentSchema, type Student } from "./gen/student_pb.ts";

const students = new Map<string, Student>([
  ["davie", create(StudentSchema, { name: "davie", classes: "软件工程专业", grade: 80, phone: "12345678901" })],
  ["steven", create(StudentSchema, { name: "steven", classes: "计算机科学专业", grade: 90, phone: "12345678902" })],
]);

const service = new Service({ name: "student_service", version: "v1.0.0" });
// runMain: a bad flag is one line and exit 2, a failed start one line and exit 1.
await runMain(async () => {
  service.init();

  // The generated StudentManager descriptor types the implementation and names the endpoint.
  service.handle(StudentManager, {
    getStudent(req) {
      const found = students.get(req.name);
      if (!found) throw notFound("student_service", `no student named "${req.name}"`);
      return found;
    },
  });

  await service.start();
  const node = (await service.describe()).nodes[0]!;
  console.log(`student_service v1.0.0 ready at ${node.address} as ${node.id} (registry ${await service.registry()})`);
  await service.run();
});
