/** The RPC echo every system serves: {"name":"davie"} → {"msg":"Hello davie"}. */
export interface EchoRequest {
  name: string;
}

export const ECHO_REQUEST: EchoRequest = { name: "davie" };

export const hello = (req: EchoRequest) => ({ msg: `Hello ${req.name}` });

/** The echo request of a scenario: "davie", or a name of `payload` bytes. */
export const echoRequest = (payload?: number): EchoRequest => (payload ? { name: "x".repeat(payload) } : ECHO_REQUEST);

/** Fails a scenario at start whose system answers something else than the echo of request. */
export function checkEchoResponse(res: unknown, request: EchoRequest = ECHO_REQUEST): void {
  const text = JSON.stringify(res);
  if (text !== JSON.stringify(hello(request))) throw new Error(`unexpected echo response ${text.slice(0, 80)}`);
}
