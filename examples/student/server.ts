/**
 * Step 1 of the walkthrough: student_service (v1.0.0) serves StudentManager.GetStudent.
 *   npx tsx examples/student/server.ts [--registry=mdns] [--register_ttl=10 --register_interval=5]
 */
import { Service, notFound } from "../../src/index.ts";
import { StudentRequestSchema, StudentSchema, type Student, type StudentRequest } from "./gen/student_pb.ts";
import { create } from "@bufbuild/protobuf";

const students = new Map<string, Student>([
  ["davie", create(StudentSchema, { name: "davie", classes: "软件工程专业", grade: 80, phone: "12345678901" })],
  ["steven", create(StudentSchema, { name: "steven", classes: "计算机科学专业", grade: 90, phone: "12345678902" })],
]);

const service = new Service({ name: "student_service", version: "v1.0.0" });
service.init();

service.handle(
  "StudentManager",
  {
    getStudent(req: StudentRequest): Student {
      const found = students.get(req.name);
      if (!found) throw notFound("student_service", `no student named "${req.name}"`);
      return found;
    },
  },
  { GetStudent: { requestSchema: StudentRequestSchema, responseSchema: StudentSchema } },
);

await service.start();
const node = (await service.describe()).nodes[0]!;
console.log(`student_service v1.0.0 ready at ${node.address} as ${node.id} (registry ${await service.registry()})`);
await service.run();
