import { HealthCheckResponse_ServingStatus as ServingStatus, type Health } from "../../gen/grpc/health/v1/health_pb.js";
import type { ServiceHandlers } from "../rpc/handlers.ts";
import { NotFoundError } from "../errors.ts";

type Listener = (status: ServingStatus) => void;

/** Serving status per service name ("" is the whole server), as grpc.health.v1 reports it. */
export function createHealthState(services: readonly string[]) {
  const statuses = new Map<string, ServingStatus>(["", ...services].map((s) => [s, ServingStatus.NOT_SERVING]));
  const listeners = new Set<Listener>();
  return {
    get: (service: string) => statuses.get(service),
    /** Sets every known service at once: the daemon is serving or it is not. */
    setAll(status: ServingStatus) {
      for (const service of statuses.keys()) statuses.set(service, status);
      for (const listener of listeners) listener(status);
    },
    isServing: () => statuses.get("") === ServingStatus.SERVING,
    listen(listener: Listener): () => void {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

export type HealthState = ReturnType<typeof createHealthState>;

export function createHealthHandlers(state: HealthState): ServiceHandlers<typeof Health> {
  return {
    async check(request) {
      const status = state.get(request.service);
      if (status === undefined) throw new NotFoundError(`unknown service "${request.service}"`);
      return { status };
    },
    async *watch(request, context) {
      let last: ServingStatus | undefined;
      let wake: (() => void) | undefined;
      const stop = state.listen(() => wake?.());
      const onAbort = () => wake?.();
      context.signal.addEventListener("abort", onAbort);
      try {
        while (!context.signal.aborted) {
          const status = state.get(request.service) ?? ServingStatus.SERVICE_UNKNOWN;
          if (status !== last) {
            last = status;
            yield { status };
          }
          await new Promise<void>((resolve) => (wake = resolve));
        }
      } finally {
        stop();
        context.signal.removeEventListener("abort", onAbort);
      }
    },
  };
}
