/**
 * Steps 4–5: the user service publishes the tutorial's Student once on go.micro.srv.message,
 * as protobuf (default) or as the tutorial's JSON.
 *   npx tsx examples/student/publisher.ts [protobuf|json] [--broker=http|mqtt|nats|rabbitmq|redis]
 */
import { create } from "@bufbuild/protobuf";
import { JSON_TYPE, PROTOBUF_TYPE, Service, encodeEvent, runMain } from "../../src/index.ts";
import { StudentSchema } from "./gen/student_pb.ts";

const TOPIC = "go.micro.srv.message";

const service = new Service({ name: "user_service", version: "latest" });
// runMain: a bad flag is one line and exit 2, a failed start one line and exit 1.
await runMain(async () => {
  service.init();
  const format = service.args[0] ?? "protobuf";
  if (format !== "protobuf" && format !== "json") {
    console.error(`publisher: format must be "protobuf" or "json", not "${format}"`);
    process.exit(2);
  }

  const student = create(StudentSchema, { name: "davie", classes: "软件工程专业", grade: 80, phone: "12345678901" });
  const opts = { schema: StudentSchema, header: { name: student.name }, contentType: format === "json" ? JSON_TYPE : PROTOBUF_TYPE };
  const size = encodeEvent(TOPIC, student, opts).body.length;
  let exitCode = 0;
  try {
    await service.publish(TOPIC, student, opts);
    console.log(`published Student ${student.name} to ${TOPIC} as ${opts.contentType} (${size} bytes) via ${await service.broker()} broker`);
  } catch (err) {
    console.error(`publish failed: ${(err as Error).message}`);
    exitCode = 1;
  }
  await service.stop();
  process.exit(exitCode);
});
