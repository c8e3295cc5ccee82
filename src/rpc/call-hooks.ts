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
interface Begun {
  finish(error?: unknown, response?: unknown): void;
}

/**
 * One call's pass through the hooks. An object rather than closures per call: a SubmitJob is cheap enough
 * that the allocations show. `begin` is synchronous while the hooks are (all of ours are): awaiting each
 * would cost every call a turn of the microtask queue per hook. A hook that returns a promise is awaited,
 * and the ones after it with it.
 */
class HookedCall implements Begun {
  /** How many hooks' `before` was reached (the one that refused included): theirs are the `after`s that run. */
  private entered = 0;

  constructor(private readonly hooks: readonly CallHook[], readonly call: Call) {}

  begin(from = 0): this | Promise<this> {
    const { hooks, call } = this;
    for (let i = from; i < hooks.length; i++) {
      this.entered = i + 1;
      let pending: void | Promise<void>;
      try {
        pending = hooks[i]!.before?.(call);
      } catch (err) {
        return this.refused(err);
      }
      if (pending) return pending.then(() => this.begin(i + 1), (err: unknown) => this.refused(err));
    }
    return this;
  }

  finish(error?: unknown, response?: unknown): void {
    const outcome = { error, durationMs: performance.now() - this.call.start, response };
    for (let i = this.entered - 1; i >= 0; i--) this.hooks[i]!.after?.(this.call, outcome);
  }

  private refused(err: unknown): never {
    this.finish(err);
    throw err;
  }
}

export function withCallHooks<S extends DescService>(service: S, handlers: ServiceHandlers<S>, hooks: readonly CallHook[]): ServiceHandlers<S> {
  if (hooks.length === 0) return handlers;
  const wrapped: Record<string, AnyHandler> = {};
  for (const method of service.methods) {
    const handler = (handlers as unknown as Record<string, AnyHandler>)[method.localName]!;
    const streaming = method.methodKind === "server_streaming";
    const begin = (request: unknown, context: CallContext): HookedCall | Promise<HookedCall> =>
      new HookedCall(hooks, { service: service.typeName, method: method.name, streaming, request, context, start: performance.now() }).begin();
    wrapped[method.localName] = streaming
      ? (request, context) => finishing(() => begin(request, context), () => handler(request, context) as AsyncIterable<unknown>, context)
      : async (request, context) => {
          const begun = begin(request, context);
          const hooked = begun instanceof Promise ? await begun : begun;
          try {
            const response = await (handler(request, context) as Promise<unknown>);
            hooked.finish(undefined, response);
            return response;
          } catch (err) {
            hooked.finish(err);
            throw err;
          }
        };
  }
  return wrapped as unknown as ServiceHandlers<S>;
}

/**
 * A stream's items as the handler yields them, with the after hooks run once it ends: done, failed, or left by
 * its reader (return(), e.g. when the caller went away). Written out rather than as an async generator with
 * `yield*`: a StreamJobUpdates update goes through this for every subscriber, and each generator layer costs
 * every item several turns of the microtask queue.
 */
function finishing(begin: () => Begun | Promise<Begun>, open: () => AsyncIterable<unknown>, context: CallContext): AsyncIterableIterator<unknown> {
  let inner: AsyncIterator<unknown> | undefined;
  let opening: Promise<IteratorResult<unknown>> | undefined;
  let finish: Begun["finish"] | undefined;
  const end = (error: unknown) => {
    const once = finish;
    finish = undefined;
    once?.(error ?? (context.signal.aborted ? context.signal.reason ?? new Error("cancelled") : undefined));
  };
  const step = (result: IteratorResult<unknown>) => {
    if (result.done) end(undefined);
    return result;
  };
  const failed = (err: unknown): never => {
    end(err);
    throw err;
  };
  const start = async () => {
    const begun = begin();
    const hooked = begun instanceof Promise ? await begun : begun;
    finish = (error, response) => hooked.finish(error, response);
    try {
      inner = open()[Symbol.asyncIterator]();
    } catch (err) {
      return failed(err);
    }
    return inner.next().then(step, failed);
  };
  return {
    next: () => (inner ? inner.next().then(step, failed) : (opening ??= start())),
    async return(value?: unknown) {
      try {
        await inner?.return?.(value);
      } finally {
        end(undefined);
      }
      return { done: true, value };
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}
