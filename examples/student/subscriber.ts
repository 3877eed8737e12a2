/**
 * Step 4: the message service. Subscribes to go.micro.srv.message and prints every Student it
 * receives, whichever codec the publisher chose (the Content-Type header says which).
 *   npx tsx examples/student/subscriber.ts [--broker=http|mqtt|nats|rabbitmq|redis]
 */
import { Service, runMain } from "../../src/index.ts";
import { StudentSchema, type Student } from "./gen/student_pb.ts";
import { toJson } from "@bufbuild/protobuf";

export const TOPIC = "go.micro.srv.message";

const service = new Service({ name: "go.micro.srv", version: "latest" });
// runMain: a bad flag is one line and exit 2, a failed start one line and exit 1.
await runMain(async () => {
  service.init();

  await service.subscribe<Student>(
    TOPIC,
    (student, event) => {
      const h = event.message.header;
      console.log(
        `received ${JSON.stringify(toJson(StudentSchema, student))} header name=${h.name} as ${h["Content-Type"]} (${event.message.body.length} bytes)`,
      );
    },
    { schema: StudentSchema },
  );
  await service.start();
  console.log(`message service subscribed to ${TOPIC} via ${await service.broker()} broker`);
  await service.run();
});
