import { MicroError, internalServerError, timeout } from "../errors.ts";

const CLIENT_ID = "go.micro.client";

/** A failure of the connection, not of the handler: the client may retry it on another node. */
export function connectionError(address: string, cause: Error | string): MicroError {
  const message = typeof cause === "string" ? cause : cause.message;
  const err = internalServerError(CLIENT_ID, `connection error: ${address}: ${message}`);
  err.retryable = true;
  return err;
}

export function callTimeout(address: string, ms: number): MicroError {
  const err = timeout(CLIENT_ID, `call timeout: no response from ${address} within ${ms}ms`);
  err.retryable = true;
  return err;
}

/** JSON of an error that is safe in an HTTP header (non-ASCII escaped). */
export function headerSafeJSON(err: MicroError): string {
  return JSON.stringify(err).replace(/[\u007f-\uffff]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}
