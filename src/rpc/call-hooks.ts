import type { DescService } from "@bufbuild/protobuf";
import type { CallContext, ServiceHandlers } from "./handlers.ts";

/** Who is calling, once authentication has run. */
export interface Principal {
  /** "api_key", "client_certificate", or "anonymous" (auth disabled, or a loopback listener without keys). */
  kind: "api_key" | "client_certificate" | "anonymous";
  /** Key id, certificate subject, or "anonymous". */
  id: string;
  name: string;
  role: "admin" | "operator" | "viewer";
}

/** One call as the hooks see it, on either transport. */
export interface Call {
  /** e.g. "hypervisord.v1.HypervisordService". */
  readonly service: string;
  /** The RPC's name, e.g. "SubmitJob": bounded, so fit for metric labels. */
  readonly method: string;
  readonly streaming: boolean;
  readonly request: unknown;
  readonly context: CallContext;
  /** performance.now() when the call reached the hooks. */
  readonly start: number;
  /** Set by the authentication hook for the ones after it (authorization, rate limits, audit). */
  principal?: Principal;
}

export interface CallOutcome {
  /** The error the call ended with (a refusal by a hook, or the handler's). */
  error?: unknown;
  durationMs: number;
  /** The response of a unary call that succeeded: the audit takes the id of what Create* and Submit* made from it. */
  response?: unknown;
}

/**
 * Cross-cutting work around every call of a service, whatever the transport: metrics, authentication,
 * rate limits, audit, tracing. `before` hooks run in order and may throw to refuse the call; `after`
 * hooks of every hook whose `before` ran (or that has none) run in reverse order once the call has ended:
 * a unary call settled, a stream finished, failed or was cancelled.
 */
export interface CallHook {
  before?(call: Call): void | Promise<void>;
  after?(call: Call, outcome: CallOutcome): void;
}

type AnyHandler = (request: unknown, context: CallContext) => Promise<unknown> | AsyncIterable<unknown>;

export function withCallHooks<S extends DescService>(service: S, handlers: ServiceHandlers<S>, hooks: readonly CallHook[]): ServiceHandlers<S> {
  if (hooks.length === 0) return handlers;
  const wrapped: Record<string, AnyHandler> = {};
  for (const method of service.methods) {
    const handler = (handlers as unknown as Record<string, AnyHandler>)[method.localName]!;
    const streaming = method.methodKind === "server_streaming";
    const begin = async (request: unknown, context: CallContext) => {
      const call: Call = { service: service.typeName, method: method.name, streaming, request, context, start: performance.now() };
      const entered: CallHook[] = [];
      const finish = (error?: unknown, response?: unknown) => {
        const outcome = { error, durationMs: performance.now() - call.start, response };
        for (const hook of entered.reverse()) hook.after?.(call, outcome);
      };
      try {
        for (const hook of hooks) {
          entered.push(hook);
          await hook.before?.(call);
        }
      } catch (err) {
        finish(err);
        throw err;
      }
      return { call, finish };
    };
    wrapped[method.localName] = streaming
      ? async function* (request, context) {
          const { finish } = await begin(request, context);
          let error: unknown;
          try {
            yield* handler(request, context) as AsyncIterable<unknown>;
          } catch (err) {
            error = err;
            throw err;
          } finally {
            finish(error ?? (context.signal.aborted ? context.signal.reason ?? new Error("cancelled") : undefined));
          }
        }
      : async (request, context) => {
          const { finish } = await begin(request, context);
          try {
            const response = await (handler(request, context) as Promise<unknown>);
            finish(undefined, response);
            return response;
          } catch (err) {
            finish(err);
            throw err;
          }
        };
  }
  return wrapped as unknown as ServiceHandlers<S>;
}
