/** Nothing at all: what an idle Node process with the tsx loader costs before any framework loads. */
import type { Roles } from "../role.ts";

export const roles: Roles = {
  idle: async () => ({}),
};
