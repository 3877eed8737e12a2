/** Moleculer 0.15 (the current release; Node ≥ 22): the same roles as 0.14's. */
import { moleculerRoles } from "./moleculer.ts";

export const roles = moleculerRoles("moleculer-0.15");
