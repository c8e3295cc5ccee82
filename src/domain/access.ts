export const ROLES = ["admin", "operator", "viewer"] as const;
export type Role = (typeof ROLES)[number];

export interface ApiKey {
  id: string;
  name: string;
  role: Role;
  /** Hex SHA-256 of the key; the key itself is never stored. */
  keyHash: string;
  /** The key's first characters, to recognise it. */
  prefix: string;
  source: "api" | "config";
  createTime: number;
  lastUsedTime?: number;
  expireTime?: number;
  revokeTime?: number;
}

export interface AuditEvent {
  id: number;
  time: number;
  principal: string;
  role: string;
  method: string;
  transport: string;
  peer: string;
  /** "OK" or a gRPC code name. */
  code: string;
  resource: string;
  /** The request without secrets, as JSON. */
  requestJson: string;
  durationMs: number;
}
