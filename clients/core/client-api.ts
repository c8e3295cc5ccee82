/**
 * What both clients (clients/node, clients/web) export besides their own createHypervisordClient: the
 * shared helpers, Connect's error type and the generated messages. One list, so that the two cannot drift.
 */
export type { BaseClientOptions, HypervisordClient } from "./hypervisord-client.ts";
export { createAuthInterceptor, createRetryInterceptor, isIdempotent, type RetryOptions } from "./interceptors.ts";
export { isDroppedStream, isTerminal, watchJob, type WatchJobOptions } from "./watch-job.ts";
export { isBatchTerminal, watchBatch, type WatchBatchOptions } from "./watch-batch.ts";
export { Code, ConnectError } from "@connectrpc/connect";
export * from "../../gen/hypervisord/v1/service_pb.js";
export * from "../../gen/hypervisord/v1/job_pb.js";
export * from "../../gen/hypervisord/v1/batch_pb.js";
export * from "../../gen/hypervisord/v1/vm_pb.js";
export * from "../../gen/hypervisord/v1/schedule_pb.js";
export * from "../../gen/hypervisord/v1/profile_pb.js";
export * from "../../gen/hypervisord/v1/webhook_pb.js";
export * from "../../gen/hypervisord/v1/access_pb.js";
