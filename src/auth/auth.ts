/**
 * Who may call: an Auth is checked on the RPC server's and the http broker's receive paths before
 * anything runs (no endpoint is named to a caller it refuses), and supplies the credentials that
 * clients and publishers send. Off unless an Auth is given.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { type MicroError, forbidden, unauthorized } from "../errors.ts";
import { getHeader, type Headers } from "../transport/transport.ts";

export interface Auth {
  /** Headers that prove the caller, added to every call and delivery it makes. */
  credentials(): Headers;
  /** undefined lets the request in; otherwise the go-micro error to answer (401 without credentials, 403 with wrong ones). */
  verify(headers: Headers, id: string): MicroError | undefined;
}

/** A token every node of the fleet shares, sent as `Authorization: Bearer <token>`. */
export function sharedToken(token: string): Auth {
  if (!token) throw new TypeError("sharedToken: the token must not be empty");
  const digest = (s: string) => createHash("sha256").update(s).digest(); // equal lengths for timingSafeEqual
  const expected = digest(token);
  return {
    credentials: () => ({ Authorization: `Bearer ${token}` }),
    verify(headers, id) {
      const given = getHeader(headers, "Authorization");
      if (!given?.startsWith("Bearer ")) return unauthorized(id, "no credentials: send Authorization: Bearer <token>");
      return timingSafeEqual(digest(given.slice(7)), expected) ? undefined : forbidden(id, "invalid credentials");
    },
  };
}
