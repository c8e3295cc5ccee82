import net from "node:net";
import { create, toBinary, fromBinary, type DescFile, type DescMessage, type DescMethod, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { ReflectionService } from "@grpc/reflection";
import type { Logger } from "pino";
import { HypervisordService } from "../../gen/hypervisord/v1/service_pb.js";
import type { CallContext, ServiceHandlers } from "../rpc/handlers.ts";
import { clientCertificateOf } from "../auth/client-certificate.ts";
import type { ServerTls } from "../auth/server-tls.ts";
import { retryHeaders, statusOf } from "../rpc/status.ts";
import { type HypervisordError, InvalidArgumentError } from "../errors.ts";
import type { ListenAddress } from "../listen-address.ts";
import { createBinaryEncoder } from "./binary-encoder.ts";
import { createConnectionLimits, type ConnectionLimits } from "./connection-limits.ts";
import { DEFAULT_EDGE_OPTIONS, type EdgeOptions } from "./edge-options.ts";

export interface GrpcServiceBinding {
  service: DescService;
  handlers: ServiceHandlers<DescService>;
}

/**
 * A service and its handlers, checked against each other here. The listeners look handlers up by method name,
 * so a binding forgets the service's own type: the one cast of it is this one.
 */
export function bindService<S extends DescService>(service: S, handlers: ServiceHandlers<S>): GrpcServiceBinding {
  return { service, handlers: handlers as unknown as ServiceHandlers<DescService> };
}

type AnyHandler = (request: unknown, context: CallContext) => Promise<unknown> | AsyncIterable<unknown>;

/**
 * A grpc-js server for protobuf-es services: the ServiceDefinition is built
 * from the generated descriptors (no proto-loader), with server reflection
 * (v1 and v1alpha) over the same descriptors. With `tls`, it serves TLS (and mTLS with `tls.ca`).
 *
 * grpc-js has no connection cap nor a deadline before a connection's first call, so the port is ours: a
 * net.Server whose connections pass the connection limits and are then injected into grpc-js
 * (createConnectionInjector); an interceptor tells the limits when calls start and end, and stream resets.
 */
export interface GrpcServerOptions {
  /** Connection deadlines and caps, request size (`server.*`); default DEFAULT_EDGE_OPTIONS. */
  edge?: EdgeOptions;
  /**
   * The refusal of a HypervisordService call from its metadata and connection alone (AuthHook.check), asked
   * before its message is read: a caller without valid credentials cannot make the daemon read a message.
   */
  /** A promise when the answer needs the store (a key not in the auth cache). */
  authorize?: (method: string, context: CallContext) => HypervisordError | undefined | Promise<HypervisordError | undefined>;
}

export function createGrpcServer(bindings: readonly GrpcServiceBinding[], logger: Logger, tls?: ServerTls, options: GrpcServerOptions = {}) {
  const edge = options.edge ?? DEFAULT_EDGE_OPTIONS;
  // grpc-js closes an idle connection itself, with GOAWAY; the limits cut it a little later if that did not work.
  const limits = createConnectionLimits({ ...edge, idleTimeoutMs: edge.idleTimeoutMs + IDLE_GOAWAY_GRACE_MS }, "grpc", logger);
  const server = new grpc.Server({
    "grpc.max_receive_message_length": edge.maxRequestBytes,
    "grpc.max_connection_idle_ms": edge.idleTimeoutMs,
    "grpc.keepalive_time_ms": edge.keepaliveTimeMs,
    "grpc.keepalive_timeout_ms": edge.keepaliveTimeoutMs,
    "grpc.max_concurrent_streams": edge.maxConcurrentStreams,
    // Channelz bookkeeping costs on every message and nothing here reads it.
    "grpc.enable_channelz": 0,
    interceptors: [edgeInterceptor(limits, options.authorize, logger, tls !== undefined)],
  });
  for (const { service, handlers } of bindings) {
    const implementation: grpc.UntypedServiceImplementation = {};
    for (const method of service.methods) {
      const handler = (handlers as unknown as Record<string, AnyHandler>)[method.localName]!;
      implementation[method.name] = method.methodKind === "server_streaming"
        ? streamingHandler(method, handler, logger, tls !== undefined)
        : unaryHandler(method, handler, logger, tls !== undefined);
    }
    server.addService(grpcServiceDefinition(service), implementation);
  }
  new ReflectionService(reflectionPackage(bindings.map((b) => b.service))).addToServer(server);
  const injector = server.createConnectionInjector(serverCredentials(tls));
  const listener = net.createServer((socket) => {
    if (limits.admit(socket)) injector.injectConnection(socket);
  });
  return {
    server,
    listen(address: ListenAddress): Promise<number> {
      return new Promise((resolve, reject) => {
        listener.once("error", reject);
        listener.listen(address.port, address.host, () => {
          listener.off("error", reject);
          resolve((listener.address() as net.AddressInfo).port);
        });
      });
    },
    /** Graceful close; calls still open after `timeoutMs` are cut. */
    close(timeoutMs: number): Promise<void> {
      const closed = new Promise<void>((resolve) => listener.close(() => resolve()));
      const timer = setTimeout(() => {
        server.forceShutdown();
        limits.destroyAll();
      }, timeoutMs);
      // GOAWAY on every connection; they close as their calls end.
      server.tryShutdown(() => {});
      limits.closeIdle();
      return closed.finally(() => clearTimeout(timer));
    },
  };
}

/** How much later than grpc-js's own idle GOAWAY the connection limits cut an idle connection. */
const IDLE_GOAWAY_GRACE_MS = 2000;

/**
 * The one interceptor of every call: one layer rather than one per concern, as each layer wraps every
 * event of every call (a measurable part of a SubmitJob). It does two things:
 *
 * - tells the connection limits of each call (grpc-js shows no connections, but each call its peer's
 *   address and port): busy while it runs, its request received once half-closed (all our RPCs are unary
 *   or server-streaming). grpc-js reports every stream's close as a cancel and does not show RST_STREAM, so
 *   a stream reset is a call that closed before its status, or without its request message (which is also a
 *   call refused from its metadata: a client sending such calls in a burst loses its connection, as it should);
 * - with `authorize`, checks the credentials of a HypervisordService call from its metadata, before its
 *   message is read (grpc-js reads a unary request whole before the handler runs): a refused call is answered
 *   at once and its message never read. A call that passes goes on to the call hooks, whose authentication agrees.
 */
function edgeInterceptor(limits: ConnectionLimits, authorize: GrpcServerOptions["authorize"], logger: Logger, secure: boolean): grpc.ServerInterceptor {
  return (method, call) => {
    const { remoteAddress, remotePort } = call.getConnectionInfo();
    const peer = `${remoteAddress}:${remotePort}`;
    const tracked = limits.callStarted(peer);
    const name = authorize && method.path.startsWith(RPC_PREFIX) ? method.path.slice(RPC_PREFIX.length) : undefined;
    if (!tracked && name === undefined) return new grpc.ServerInterceptingCall(call);
    let requested = false;
    let answered = false;
    const edge: RefusingCall = new RefusingCall(call, {
      start: (next) => next({
        ...(name !== undefined && {
          onReceiveMetadata: (metadata: grpc.Metadata, nextMetadata: (metadata: grpc.Metadata) => void) => {
            const refusal = authorize!(name, {
              signal: CHECKED_BEFORE_START,
              peer: call.getPeer(),
              transport: "grpc",
              header: (name) => headerOf(metadata, name),
              get clientCertificate() {
                return secure ? clientCertificateOf(call.getAuthContext()?.sslPeerCertificate) : undefined;
              },
            });
            const decide = (refusal: unknown) => {
              if (!refusal) return nextMetadata(metadata);
              edge.refused = true;
              edge.sendStatus(grpcStatusOf(refusal, logger, name));
            };
            if (!(refusal instanceof Promise)) return decide(refusal);
            // A key not in the auth cache: grpc-js starts reading the message only once the metadata has passed
            // (nextMetadata), so a refused call's message stays unread meanwhile too.
            refusal.then(decide, decide)
              .catch((err: unknown) => logger.error({ err, method: name }, "answering a call after its credentials were checked failed"));
          },
        }),
        ...(tracked && {
          onReceiveMessage: (message: unknown, nextMessage: (message: unknown) => void) => {
            requested = true;
            nextMessage(message);
          },
          onReceiveHalfClose: (nextHalfClose: () => void) => {
            tracked.received();
            nextHalfClose();
          },
          onCancel: () => {
            if (!requested || !answered) limits.streamReset(peer);
            tracked.ended();
          },
        }),
      }),
      ...(tracked && {
        sendStatus: ((status, next) => {
          answered = true;
          tracked.ended();
          next(status);
        }) satisfies grpc.Responder["sendStatus"],
      }),
    });
    return edge;
  };
}

function serverCredentials(tls: ServerTls | undefined): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  if (tls.ca && !tls.requireClientCert) return new OptionalClientCertificates(tls);
  return grpc.ServerCredentials.createSsl(tls.ca ?? null, [{ cert_chain: tls.cert, private_key: tls.key }], tls.requireClientCert);
}

/**
 * TLS that asks for a client certificate without requiring one, as the HTTP listener does with a client
 * CA: createSsl can only do both or neither. A certificate that does not verify is not an identity
 * (getAuthContext reports only verified ones); such a caller needs a key.
 */
class OptionalClientCertificates extends grpc.ServerCredentials {
  constructor(tls: ServerTls) {
    super({ requestCert: true, rejectUnauthorized: false }, { ca: tls.ca, cert: tls.cert, key: tls.key });
  }

  override _equals(other: grpc.ServerCredentials): boolean {
    return other === this;
  }
}

/** The grpc-js ServiceDefinition of a protobuf-es service (also usable for clients: makeGenericClientConstructor). */
export function grpcServiceDefinition(service: DescService): grpc.ServiceDefinition {
  return Object.fromEntries(service.methods.map((m) => [m.name, methodDefinition(service, m)]));
}

function methodDefinition(service: DescService, method: DescMethod): grpc.MethodDefinition<unknown, unknown> {
  const streaming = method.methodKind === "server_streaming";
  return {
    path: `/${service.typeName}/${method.name}`,
    requestStream: false,
    responseStream: streaming,
    requestSerialize: (message) => Buffer.from(toBinary(method.input, message as never)),
    requestDeserialize: (bytes: Buffer) => decodeRequest(method, bytes),
    // A streamed update is shared by every subscriber: serialize it once.
    responseSerialize: streaming ? cachedSerializer(createBinaryEncoder(method.output)) : createBinaryEncoder(method.output),
    responseDeserialize: (bytes: Buffer) => fromBinary(method.output, bytes),
  };
}

/**
 * Bytes that do not decode are the caller's error (INVALID_ARGUMENT), but a throwing deserializer makes
 * grpc-js answer INTERNAL: so decoding never throws here, and the handler answers for the marker.
 */
class UndecodableRequest {
  constructor(readonly error: InvalidArgumentError) {}
}

function decodeRequest(method: DescMethod, bytes: Buffer): unknown {
  try {
    return fromBinary(method.input, bytes);
  } catch (err) {
    return new UndecodableRequest(new InvalidArgumentError("request", `does not decode as ${method.input.typeName}: ${(err as Error).message}`));
  }
}

function cachedSerializer(encode: (message: unknown) => Buffer): (message: unknown) => Buffer {
  const cache = new WeakMap<object, Buffer>();
  return (message) => {
    let bytes = cache.get(message as object);
    if (!bytes) {
      bytes = encode(message);
      cache.set(message as object, bytes);
    }
    return bytes;
  };
}

/**
 * The call as handlers see it. Its signal is made when first read (most unary handlers never read it: an
 * AbortController and a listener per call are a measurable part of a SubmitJob), aborted at once if the call
 * was already cancelled.
 */
function callContext(call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>, secure: boolean): CallContext {
  let controller: AbortController | undefined;
  const context: CallContext = {
    get signal() {
      if (!controller) {
        const made = new AbortController();
        controller = made;
        if (call.cancelled) made.abort();
        else call.once("cancelled", () => made.abort());
      }
      return controller.signal;
    },
    peer: call.getPeer(),
    transport: "grpc",
    header: (name) => headerOf(call.metadata, name),
    // Read when asked (the auth hook asks only when no key is sent): grpc-js reports verified certificates only.
    // Without TLS there is none, and asking grpc-js for the auth context costs every call.
    get clientCertificate() {
      return secure ? clientCertificateOf(call.getAuthContext()?.sslPeerCertificate) : undefined;
    },
  };
  return context;
}

function toServiceError(err: unknown, logger: Logger, method: DescMethod): Partial<grpc.StatusObject> {
  return grpcStatusOf(err, logger, method.name);
}

/** A failure as a gRPC status, with the retry hint as trailers when there is one. */
function grpcStatusOf(err: unknown, logger: Logger, method: string): grpc.StatusObject {
  const status = statusOf(err, logger, method);
  const metadata = new grpc.Metadata();
  for (const [name, value] of Object.entries(retryHeaders(status) ?? {})) metadata.set(name, value);
  return { code: status.number, details: status.message, metadata };
}

function unaryHandler(method: DescMethod, handler: AnyHandler, logger: Logger, secure: boolean): grpc.handleUnaryCall<unknown, unknown> {
  return (call, callback) => {
    const context = callContext(call, secure);
    const request = call.request;
    if (request instanceof UndecodableRequest) return callback(toServiceError(request.error, logger, method));
    (handler(request, context) as Promise<unknown>).then(
      (response) => callback(null, create(method.output, response as never)),
      (err: unknown) => callback(toServiceError(err, logger, method)),
    );
  };
}

function streamingHandler(method: DescMethod, handler: AnyHandler, logger: Logger, secure: boolean): grpc.handleServerStreamingCall<unknown, unknown> {
  return async (call) => {
    const context = callContext(call, secure);
    const { signal } = context;
    try {
      if (call.request instanceof UndecodableRequest) throw call.request.error;
      for await (const item of handler(call.request, context) as AsyncIterable<unknown>) {
        if (call.cancelled) break;
        let room = true;
        for (const response of Array.isArray(item) ? item : [item]) room = call.write(create(method.output, response as never)) && room;
        if (!room) await drained(call, signal);
      }
      if (!signal.aborted) call.end();
    } catch (err) {
      // emit('error') ends the stream with a status; destroy() would leave the client hanging.
      if (!signal.aborted) call.emit("error", toServiceError(err, logger, method));
    }
  };
}

const RPC_PREFIX = `/${HypervisordService.typeName}/`;

/** A request header (gRPC metadata) as CallContext.header gives it: the first value, as a string. */
function headerOf(metadata: grpc.Metadata, name: string): string | undefined {
  const value = metadata.get(name)[0];
  return value === undefined ? undefined : String(value);
}
/** The signal of the pre-body check, which runs before the call does: made once (AbortSignal.abort() per call costs a DOMException with its stack). */
const CHECKED_BEFORE_START = AbortSignal.abort();

/** A call refused from its metadata: what the handler would read next is never asked for. */
class RefusingCall extends grpc.ServerInterceptingCall {
  refused = false;

  override startRead(): void {
    if (!this.refused) super.startRead();
  }
}

/** Waits until the call's write buffer drains or the call goes away. */
function drained(call: grpc.ServerWritableStream<unknown, unknown>, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      call.off("drain", done);
      signal.removeEventListener("abort", done);
      resolve();
    };
    call.on("drain", done);
    signal.addEventListener("abort", done);
  });
}

/** The package definition @grpc/reflection expects, from the services' files and all their imports. */
function reflectionPackage(services: readonly DescService[]) {
  const files = new Map<string, DescFile>();
  const visit = (file: DescFile) => {
    if (files.has(file.name)) return;
    files.set(file.name, file);
    file.dependencies.forEach(visit);
  };
  services.forEach((s) => visit(s.file));
  const fileDescriptorProtos = [...files.values()].map((f) => Buffer.from(toBinary(FileDescriptorProtoSchema, f.proto)));
  return Object.fromEntries(services.map((s) => [s.typeName, { fileDescriptorProtos }])) as never;
}
