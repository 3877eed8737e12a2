/** The pub/sub anchor: the NATS client tsmicro uses (@nats-io/transport-node), publish → subscribe, no framework. */
import { connect } from "@nats-io/transport-node";
import { publishOp, receipts, sentAt, stampedBody, type SubscriberInfo } from "../pubsub.ts";
import { Recorder } from "../recorder.ts";
import type { Roles } from "../role.ts";

const SERVER = "127.0.0.1:4222";

export const roles: Roles = {
  async subscriber(ctx) {
    const nc = await connect({ servers: SERVER });
    const recorder = new Recorder();
    const credits = await receipts(recorder);
    nc.subscribe(`${ctx.namespace}.events`, { callback: (_err, msg) => credits.received(sentAt(msg.data)) });
    await nc.flush();
    return { info: { creditPort: credits.port } satisfies SubscriberInfo, recorder };
  },

  async publisher(ctx) {
    const nc = await connect({ servers: SERVER });
    const subject = `${ctx.namespace}.events`;
    return { op: await publishOp(ctx.peer as SubscriberInfo, () => nc.publish(subject, stampedBody())) };
  },
};
