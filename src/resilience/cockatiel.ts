/** cockatiel, loaded when a policy first needs it: a node's first failure, a jittered backoff, a bulkhead (see load-on-use.ts). */
import { loadOnUse } from "../load-on-use.ts";

export const cockatiel = loadOnUse<typeof import("cockatiel")>("cockatiel");
