import type { DescMethodServerStreaming, DescMethodUnary, DescService, MessageInitShape, MessageShape } from "@bufbuild/protobuf";

/** What a handler knows of its call, whatever the transport. */
export interface CallContext {
  /** Aborted when the caller goes away or the deadline passes. */
  readonly signal: AbortSignal;
  /** Remote address, e.g. "127.0.0.1:53122". */
  readonly peer: string;
  readonly transport: "grpc" | "connect";
  /** Request headers (gRPC metadata), lower-case names; the first value of a repeated one. */
  header(name: string): string | undefined;
  /** The verified client certificate of a TLS connection, when the client sent one. */
  readonly clientCertificate?: { subject: string; fingerprint256: string };
}

/**
 * A service implementation independent of transport: unary methods return a
 * promise, server-streaming ones an async iterable of responses, or of batches
 * of responses that the transport writes back to back (cheaper for busy streams).
 */
export type ServiceHandlers<S extends DescService> = {
  [K in keyof S["method"]]: S["method"][K] extends DescMethodUnary<infer I, infer O>
    ? (request: MessageShape<I>, context: CallContext) => Promise<MessageInitShape<O>>
    : S["method"][K] extends DescMethodServerStreaming<infer I, infer O>
      ? (request: MessageShape<I>, context: CallContext) => AsyncIterable<MessageInitShape<O> | readonly MessageInitShape<O>[]>
      : never;
};
