import assert from "node:assert/strict";
import { test } from "node:test";
import { decodeEnvelope, encodeEnvelope } from "../../src/broker/shared.ts";

/** go-micro's broker.Message as Go's encoding/json writes it (and as tsmicro always wrote it). */
const goJson = (header: Record<string, string> | null, body: Uint8Array) => Buffer.from(JSON.stringify({ Header: header, Body: Buffer.from(body).toString("base64") }));

const headerSets: Record<string, string>[] = [
  {},
  { "Content-Type": "application/json", "Micro-Topic": "go.micro.srv.message", "Micro-Id": "8f1c1f2e-4a4b" },
  { name: "davie", note: '软件工程 "quoted" \\ back,"Body":"x' },
  { Body: "QUFB", Header: "{}" },
];

test("the envelope's bytes are JSON.stringify({Header, Body}) for every header set and body length", () => {
  for (const header of headerSets)
    for (let length = 0; length <= 7; length++) {
      const body = Buffer.from([0xff, 0x00, 0x7f, 0x22, 0x5c, 0xfb, 0xef].slice(0, length));
      assert.deepEqual(encodeEnvelope({ header, body }), goJson(header, body), `${JSON.stringify(header)}, ${length} bytes`);
    }
});

test("envelopes decode to their header and body, however many base64 padding characters the body has", () => {
  for (const header of headerSets)
    for (let length = 0; length <= 7; length++) {
      const body = Buffer.from("a\u0000\"\\é".repeat(2)).subarray(0, length);
      const { message, error } = decodeEnvelope(goJson(header, body));
      assert.equal(error, undefined);
      assert.deepEqual(message.header, header);
      assert.deepEqual(Buffer.from(message.body), body);
    }
  assert.deepEqual(decodeEnvelope(goJson(null, Buffer.from("x"))).message.header, {}, "a nil Go map is null");
});

test("envelopes in any other JSON form decode as JSON.parse reads them", () => {
  const cases = [
    '{"Header":{},"Body":"QU\\/B"}', // an escaped slash
    '{"Header":{},"Body":"\\u0051UFB"}',
    '{"Header":{"a":"b"},"Body":"QUFB","Body":"QkJC"}', // the last Body wins
    '{"Header":{},"Header":{"a":"b"},"Body":"QUFB"}',
    '{"Body":"QUFB","Header":{"k":"v"}}',
    '{ "Header": {}, "Body": "QUFB" }',
    '{"Header":{},"Body":"QQ==QUFB"}',
  ];
  for (const json of cases) {
    const { message, error } = decodeEnvelope(Buffer.from(json));
    const expected = JSON.parse(json) as { Header: Record<string, string>; Body: string };
    assert.equal(error, undefined, json);
    assert.deepEqual(message.header, expected.Header, json);
    assert.deepEqual(Buffer.from(message.body), Buffer.from(expected.Body, "base64"), json);
  }
});

test("bytes that are no envelope arrive as the body, with an error", () => {
  const notEnvelopes = [
    '{"Header":{},"Body":"QU\u0001FB"}', // a control character: not JSON
    '{"Header":{},"Body":"QU"FB"}',
    '{"Header":{"a":1},"Body":"QUFB"}', // header values must be strings
    '{"Header":[],"Body":"QUFB"}',
    '{"Header":{},"Body":7}',
    '{"Header":{}x,"Body":"QUFB"}',
    "plain bytes",
    '{"Header":{},"Body":"',
    "",
  ];
  for (const text of notEnvelopes) {
    const bytes = Buffer.from(text);
    const { message, error } = decodeEnvelope(bytes);
    assert.ok(error, text);
    assert.equal(message.body, bytes, text);
    assert.deepEqual(message.header, {}, text);
  }
});
