import { HypervisordService } from "../../gen/hypervisord/v1/service_pb.js";
import type { Role } from "../domain/access.ts";

/** What a call does: "read" (read and watch), "operate" (change jobs, schedules, webhooks, profiles, packages), "admin" (keys, audit). */
export type Access = "read" | "operate" | "admin";

type MethodName = keyof (typeof HypervisordService)["method"];

/**
 * Every RPC of HypervisordService, classified by hand. Keyed by the generated local names, so that the
 * compiler (and the check below, at module load) refuses a new RPC that nobody has classified.
 */
const ACCESS_BY_METHOD = {
  submitJob: "operate",
  submitJobs: "operate",
  getJob: "read",
  listJobs: "read",
  cancelJob: "operate",
  getJobHistory: "read",
  getBatch: "read",
  listBatches: "read",
  cancelBatch: "operate",
  streamJobUpdates: "read",
  getJobLogs: "read",
  streamJobLogs: "read",
  getStatus: "read",
  getCapabilities: "read",
  listVMs: "read",
  getVM: "read",
  validateOva: "read",
  extractOva: "operate",
  verifyManifest: "read",
  createSchedule: "operate",
  getSchedule: "read",
  listSchedules: "read",
  updateSchedule: "operate",
  deleteSchedule: "operate",
  enableSchedule: "operate",
  disableSchedule: "operate",
  triggerSchedule: "operate",
  listScheduleRuns: "read",
  createProfile: "operate",
  getProfile: "read",
  listProfiles: "read",
  updateProfile: "operate",
  deleteProfile: "operate",
  createWebhook: "operate",
  getWebhook: "read",
  listWebhooks: "read",
  updateWebhook: "operate",
  deleteWebhook: "operate",
  testWebhook: "operate",
  listWebhookDeliveries: "read",
  createApiKey: "admin",
  listApiKeys: "admin",
  revokeApiKey: "admin",
  listAuditEvents: "admin",
} as const satisfies Record<MethodName, Access>;

const GRANTS: Record<Role, ReadonlySet<Access>> = {
  viewer: new Set(["read"]),
  operator: new Set(["read", "operate"]),
  admin: new Set(["read", "operate", "admin"]),
};

/** By the RPC's proto name ("SubmitJob"), as Call.method carries it. */
const ACCESS: ReadonlyMap<string, Access> = new Map(HypervisordService.methods.map((method) => {
  const access = (ACCESS_BY_METHOD as Record<string, Access | undefined>)[method.localName];
  if (!access) throw new Error(`src/auth/roles.ts: RPC ${method.name} has no entry in the role table; classify it as read, operate or admin`);
  return [method.name, access];
}));

/** The access an RPC needs; undefined for a method that is not HypervisordService's (health). */
export function accessOf(method: string): Access | undefined {
  return ACCESS.get(method);
}

/** Whether `role` may call `method` (a proto RPC name of HypervisordService). */
export function roleAllows(role: Role, method: string): boolean {
  const access = ACCESS.get(method);
  return access !== undefined && GRANTS[role].has(access);
}
