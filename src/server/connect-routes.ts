import type { DescService } from "@bufbuild/protobuf";
import { ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import type { Logger } from "pino";
import type { CallContext, ServiceHandlers } from "../rpc/handlers.ts";
import { retryHeaders, statusOf } from "../rpc/status.ts";
import { CLIENT_CERT_HEADER, decodeClientCertificate } from "../auth/client-certificate.ts";
import { connectDecodeOptions, withBinaryBodyCheck } from "./connect-decoding.ts";
import type { GrpcServiceBinding } from "./grpc-server.ts";

/** Set by the HTTP server on every request from the socket (any value a client sent is dropped): the caller's address. */
export const PEER_HEADER = "x-hypervisord-peer";

type AnyHandler = (request: unknown, context: CallContext) => Promise<unknown> | AsyncIterable<unknown>;

/**
 * Registers transport-agnostic handlers with connect-node, mapping errors through the one status function.
 * Method by method, each with its request decoding (connect-decoding.ts: strict JSON, binary refused as
 * INVALID_ARGUMENT when it does not decode).
 */
export function registerConnectServices(router: ConnectRouter, bindings: readonly GrpcServiceBinding[], logger: Logger): void {
  for (const { service, handlers } of bindings) {
    const implementation = connectImplementation(service, handlers, logger);
    for (const method of service.methods) router.rpc(method as never, implementation[method.localName] as never, connectDecodeOptions(method));
  }
  // Replaced in place: connectNodeAdapter serves router.handlers as they are when routes() returns.
  router.handlers.forEach((handler, i) => {
    router.handlers[i] = withBinaryBodyCheck(handler);
  });
}

function connectImplementation(service: DescService, handlers: ServiceHandlers<DescService>, logger: Logger) {
  const implementation: Record<string, unknown> = {};
  for (const method of service.methods) {
    const handler = (handlers as unknown as Record<string, AnyHandler>)[method.localName]!;
    const toConnectError = (err: unknown) => {
      const status = statusOf(err, logger, method.name);
      return new ConnectError(status.message, status.number, retryHeaders(status));
    };
    const context = (ctx: HandlerContext): CallContext => ({
      signal: ctx.signal,
      peer: ctx.requestHeader.get(PEER_HEADER) ?? "",
      transport: "connect",
      header: (name) => ctx.requestHeader.get(name) ?? undefined,
      clientCertificate: decodeClientCertificate(ctx.requestHeader.get(CLIENT_CERT_HEADER)),
    });
    implementation[method.localName] = method.methodKind === "server_streaming"
      ? async function* (request: unknown, ctx: HandlerContext) {
          try {
            for await (const item of handler(request, context(ctx)) as AsyncIterable<unknown>) {
              if (Array.isArray(item)) yield* item;
              else yield item;
            }
          } catch (err) {
            throw toConnectError(err);
          }
        }
      : async (request: unknown, ctx: HandlerContext) => {
          try {
            return await handler(request, context(ctx));
          } catch (err) {
            throw toConnectError(err);
          }
        };
  }
  return implementation;
}
