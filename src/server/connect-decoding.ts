import { fromBinary, type DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouterOptions } from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerRequest } from "@connectrpc/connect/protocol";
import { InvalidArgumentError } from "../errors.ts";
import { createStrictJsonCheck } from "./strict-json.ts";

/**
 * How connect-node decodes request bodies on the HTTP port, per method. connect-es ignores unknown JSON
 * keys and unknown enum names by default, and reports a body that is not valid protobuf binary as
 * INTERNAL (HTTP 500); both are the caller's mistake, so both are INVALID_ARGUMENT here. The gRPC port
 * (grpc-js) keeps protobuf's binary semantics: unknown fields skipped, unknown enum numbers kept.
 */
export function connectDecodeOptions(method: DescMethod): Pick<ConnectRouterOptions, "jsonOptions"> {
  const jsonOptions = {
    // Plain JSON callers see every field, zero counts and empty lists included.
    alwaysEmitImplicit: true,
    // The check below refuses unknown keys with the field's path; this is the parser's own backstop.
    ignoreUnknownFields: false,
    // The one hook connect-es offers before protobuf-es parses: its JSON serialization decodes the body
    // with `textDecoder` (createJsonSerialization's options, which the handlers pass jsonOptions to; not in
    // the router options' type). test/input-hardening.test.ts fails if a connect upgrade stops calling it.
    textDecoder: strictJsonDecoder(method),
  };
  return { jsonOptions: jsonOptions as ConnectRouterOptions["jsonOptions"] };
}

/** Decodes UTF-8 (refusing invalid sequences) and checks the JSON against the method's input type. */
function strictJsonDecoder(method: DescMethod): { decode(input?: Uint8Array): string } {
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  const check = createStrictJsonCheck(method.input);
  return {
    decode(input) {
      let text: string;
      try {
        text = utf8.decode(input);
      } catch {
        throw new InvalidArgumentError("request body", "not valid UTF-8");
      }
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (err) {
        throw new InvalidArgumentError("request body", `not valid JSON (${(err as Error).message.slice(0, 80)})`);
      }
      const checked = check(value);
      // Unchanged: protobuf-es parses the text as sent (it also refuses duplicate keys, which JSON.parse merged).
      return checked === value ? text : JSON.stringify(checked);
    },
  };
}

/**
 * Wraps the handler of a method so that a request in protobuf binary that does not decode as the method's
 * input is refused with INVALID_ARGUMENT (HTTP 400 for Connect unary) while its body is read: connect-es
 * keeps the code of a ConnectError raised by the body, where its own parse failure would be INTERNAL. The
 * same check, and message, as the gRPC port's (grpc-server.ts). Covers Connect unary (application/proto)
 * and the enveloped protocols (gRPC, gRPC-Web, Connect streaming); compressed bodies and messages are
 * passed on unchecked, since checking them would mean decompressing them twice.
 */
export function withBinaryBodyCheck(handler: UniversalHandler): UniversalHandler {
  const input = handler.method.input;
  const decodes = (message: Uint8Array) => {
    try {
      fromBinary(input, message);
    } catch (err) {
      throw new ConnectError(`request: does not decode as ${input.typeName}: ${(err as Error).message.slice(0, 200)}`, Code.InvalidArgument);
    }
  };
  const checked = (req: UniversalServerRequest) => {
    const framing = binaryFraming(req);
    if (!framing || !isByteStream(req.body)) return handler(req);
    return handler({ ...req, body: framing === "unary" ? checkAtEnd(req.body, decodes) : checkEachEnvelope(req.body, decodes) });
  };
  return Object.assign(checked, {
    protocolNames: handler.protocolNames,
    service: handler.service,
    method: handler.method,
    requestPath: handler.requestPath,
    allowedMethods: handler.allowedMethods,
    supportedContentType: handler.supportedContentType,
  });
}

const ENVELOPED = new Set(["application/grpc", "application/grpc+proto", "application/grpc-web", "application/grpc-web+proto", "application/connect+proto"]);

/** How a binary request body is framed: one message, or envelopes (flags, length, message); undefined when not binary or compressed. */
function binaryFraming(req: UniversalServerRequest): "unary" | "enveloped" | undefined {
  if (req.method !== "POST") return undefined;
  const type = req.header.get("content-type")?.split(";")[0]?.trim().toLowerCase() ?? "";
  if (ENVELOPED.has(type)) return "enveloped";
  const encoding = req.header.get("content-encoding")?.trim().toLowerCase();
  return type === "application/proto" && (!encoding || encoding === "identity") ? "unary" : undefined;
}

function isByteStream(body: UniversalServerRequest["body"]): body is AsyncIterable<Uint8Array> {
  return typeof body === "object" && body !== null && Symbol.asyncIterator in body;
}

/**
 * Passes the chunks on as they arrive (so connect's size limit applies while reading) and, once the
 * source has ended, runs `check` on the whole body before reporting the end.
 */
async function* checkAtEnd(source: AsyncIterable<Uint8Array>, check: (body: Uint8Array) => void): AsyncIterable<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of source) {
    chunks.push(chunk);
    yield chunk;
  }
  check(Buffer.concat(chunks));
}

/**
 * Passes an enveloped body (flags byte, 4-byte length, message; repeated) on chunk by chunk, having run
 * `check` on every uncompressed message that the chunk completes before passing the chunk on: connect
 * parses a message as soon as its last byte arrives. Only the current message is kept; connect refuses
 * an envelope over its size limit from its prefix, which it sees as soon as the prefix is passed on.
 */
async function* checkEachEnvelope(source: AsyncIterable<Uint8Array>, check: (message: Uint8Array) => void): AsyncIterable<Uint8Array> {
  let prefix: number[] = [];
  let flags = 0;
  /** Bytes of the current message still to come; -1 while reading a prefix. */
  let remaining = -1;
  let message: Uint8Array[] = [];
  for await (const chunk of source) {
    for (let i = 0; i < chunk.byteLength;) {
      if (remaining < 0) {
        prefix.push(chunk[i++]!);
        if (prefix.length < 5) continue;
        flags = prefix[0]!;
        remaining = Buffer.from(prefix).readUInt32BE(1);
        prefix = [];
        message = [];
      }
      const take = Math.min(remaining, chunk.byteLength - i);
      if (flags === 0) message.push(chunk.subarray(i, i + take));
      i += take;
      remaining -= take;
      if (remaining === 0) {
        if (flags === 0) check(Buffer.concat(message));
        remaining = -1;
      }
    }
    yield chunk;
  }
}
