import { createClient, type CallOptions, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import type { Batch } from "../../gen/hypervisord/v1/batch_pb.js";
import type { Job } from "../../gen/hypervisord/v1/job_pb.js";
import { HypervisordService } from "../../gen/hypervisord/v1/service_pb.js";
import { createAuthInterceptor, createRetryInterceptor, type RetryOptions } from "./interceptors.ts";
import { watchBatch, type WatchBatchOptions } from "./watch-batch.ts";
import { watchJob, type WatchJobOptions } from "./watch-job.ts";

/** What both the Node and the browser client accept. */
export interface BaseClientOptions {
  /** Where the daemon listens; which schemes are accepted depends on the client. */
  url: string;
  /** Sent as `authorization: Bearer <key>`. */
  apiKey?: string;
  /** Deadline of each unary call, retries included (streams have none). Default 30 s; 0 = none. */
  timeoutMs?: number;
  /** Retries of idempotent calls on UNAVAILABLE: a count, or the count and backoff. Default 3. */
  retries?: number | RetryOptions;
  /** Further interceptors, run inside the retry and auth ones (so once per attempt). */
  interceptors?: Interceptor[];
}

/** The typed client of every RPC (camelCase names: `getJob`, `streamJobUpdates`, ...) plus helpers. */
export type HypervisordClient = Client<typeof HypervisordService> & {
  /** The URL the client was made for. */
  readonly url: string;
  /** See WatchJobOptions: follows a job to its end, reconnecting with after_seq. */
  watchJob(jobId: string, options?: WatchJobOptions): Promise<Job>;
  /** See WatchBatchOptions: follows a batch (a vm_selector submission) to its end. */
  watchBatch(batchId: string, options?: WatchBatchOptions): Promise<Batch>;
  /** Closes the client's connections (Node); calls in flight fail. Safe to call twice. */
  close(): void;
};

/** The interceptors every client gets, outermost first. */
export function standardInterceptors(options: BaseClientOptions): Interceptor[] {
  const retry = typeof options.retries === "number" ? { retries: options.retries } : options.retries;
  return [
    createRetryInterceptor(retry),
    ...(options.apiKey ? [createAuthInterceptor(options.apiKey)] : []),
    ...(options.interceptors ?? []),
  ];
}

/**
 * The typed client over `transport`, with the default deadline applied to unary calls only
 * (a transport-wide default timeout would also end long-lived streams such as watchJob).
 */
export function wrapTransport(transport: Transport, options: BaseClientOptions, close: () => void): HypervisordClient {
  const client = createClient(HypervisordService, transport);
  const timeoutMs = options.timeoutMs ?? 30_000;
  const methods = client as unknown as Record<string, (request: unknown, callOptions?: CallOptions) => unknown>;
  const wrapped: Record<string, unknown> = { ...client };
  const unary = timeoutMs > 0 ? HypervisordService.methods.filter((m) => m.methodKind === "unary") : [];
  for (const method of unary) {
    const call = methods[method.localName]!;
    wrapped[method.localName] = (request: unknown, callOptions: CallOptions = {}) =>
      call(request, { ...callOptions, timeoutMs: callOptions.timeoutMs ?? timeoutMs });
  }
  const typed = wrapped as Client<typeof HypervisordService>;
  let closed = false;
  return Object.assign(typed, {
    url: options.url,
    watchJob: (jobId: string, watchOptions?: WatchJobOptions) => watchJob(typed, jobId, watchOptions),
    watchBatch: (batchId: string, watchOptions?: WatchBatchOptions) => watchBatch(typed, batchId, watchOptions),
    close() {
      if (closed) return;
      closed = true;
      close();
    },
  });
}
