import { fromBinary, type DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouterOptions } from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerRequest } from "@connectrpc/connect/protocol";
import { InvalidArgumentError, quoteInput } from "../errors.ts";
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
 * Wraps the handler of a method so that a Connect unary request in protobuf binary (application/proto)
 * that does not decode as the method's input is refused with INVALID_ARGUMENT (HTTP 400) while its body is
 * read: connect-es keeps the code of a ConnectError raised by the body, where its own parse failure would
 * be INTERNAL. Compressed bodies are passed on unchecked (they would be decompressed twice), as are
 * the other protocols (gRPC and gRPC-Web report undecodable messages as INTERNAL, as grpc-js does).
 */
export function withBinaryBodyCheck(handler: UniversalHandler): UniversalHandler {
  const input = handler.method.input;
  const checked = (req: UniversalServerRequest) => {
    if (!isPlainProtoPost(req) || !isByteStream(req.body)) return handler(req);
    return handler({ ...req, body: checkAtEnd(req.body, (bytes) => {
      try {
        fromBinary(input, bytes);
      } catch (err) {
        const problem = `not a valid ${input.typeName} in protobuf binary (${quoteInput((err as Error).message, 120)})`;
        throw new ConnectError(`request body: ${problem}`, Code.InvalidArgument);
      }
    }) });
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

function isPlainProtoPost(req: UniversalServerRequest): boolean {
  const type = req.header.get("content-type")?.split(";")[0]?.trim().toLowerCase();
  const encoding = req.header.get("content-encoding")?.trim().toLowerCase();
  return req.method === "POST" && type === "application/proto" && (!encoding || encoding === "identity");
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
