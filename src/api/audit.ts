import { create } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { AuditEventSchema, type AuditEvent as AuditEventPb } from "../../gen/hypervisord/v1/access_pb.js";
import type { HypervisordService } from "../../gen/hypervisord/v1/service_pb.js";
import type { AuditEvent } from "../domain/access.ts";
import type { AuditStore } from "../store/store.ts";
import type { ServiceHandlers } from "../rpc/handlers.ts";
import { decodePageToken, encodePageToken, pageSize } from "./page-token.ts";

type AuditHandlers = Pick<ServiceHandlers<typeof HypervisordService>, "listAuditEvents">;

const DEFAULT_PAGE_SIZE = 100;

export function createAuditHandlers(store: AuditStore): AuditHandlers {
  return {
    async listAuditEvents(request) {
      const limit = pageSize(request.pageSize, DEFAULT_PAGE_SIZE);
      const query = {
        method: request.method.trim() || undefined,
        principal: request.principal.trim() || undefined,
        since: request.since ? timestampMs(request.since) : undefined,
      };
      // The token is bound to the filters: a cursor from another query is refused (INVALID_ARGUMENT page_token).
      const before = decodePageToken(request.pageToken, query);
      const page = await store.list({ ...query, before, limit });
      return {
        events: page.events.map(auditEventToPb),
        nextPageToken: page.next === undefined ? "" : encodePageToken(page.next, query),
      };
    },
  };
}

export function auditEventToPb(event: AuditEvent): AuditEventPb {
  return create(AuditEventSchema, {
    id: BigInt(event.id),
    time: timestampFromMs(event.time),
    principal: event.principal,
    role: event.role,
    method: event.method,
    transport: event.transport,
    peer: event.peer,
    code: event.code,
    resource: event.resource,
    requestJson: event.requestJson,
    durationMs: event.durationMs,
  });
}
