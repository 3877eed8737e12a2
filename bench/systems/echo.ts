/** The RPC echo every system serves: {"name":"davie"} → {"msg":"Hello davie"}. */
export interface EchoRequest {
  name: string;
}

export const ECHO_REQUEST: EchoRequest = { name: "davie" };

export const hello = (req: EchoRequest) => ({ msg: `Hello ${req.name}` });

/** Fails a scenario at start whose system answers something else than the echo. */
export function checkEchoResponse(res: unknown): void {
  const text = JSON.stringify(res);
  if (text !== '{"msg":"Hello davie"}') throw new Error(`unexpected echo response ${text}`);
}
