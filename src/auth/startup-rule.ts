import net from "node:net";
import { formatAddress, type ListenAddress } from "../listen-address.ts";

/**
 * How the daemon treats calls without credentials:
 * - "required": refused (UNAUTHENTICATED);
 * - "open": anonymous admin (auth.disabled);
 * - "open-until-keys": anonymous admin only while no usable key exists (every listener on loopback):
 *   a local operator can start without configuration, create the first key, and from then on keys
 *   are required, also on loopback, without a restart.
 * In every mode a key that is sent is checked, and a wrong one refused.
 */
export type AuthMode = "required" | "open" | "open-until-keys";

export interface AuthStartupFacts {
  listeners: readonly ListenAddress[];
  /** auth.disabled. */
  disabled: boolean;
  /** Keys neither revoked nor expired now (config file and API), ApiKeyStore.countUsable. */
  usableKeys: number;
}

/** The auth mode to start with; throws, saying why, when the daemon must not start. */
export function authStartupRule({ listeners, disabled, usableKeys }: AuthStartupFacts): AuthMode {
  if (disabled) return "open";
  const exposed = listeners.find((listener) => !isLoopback(listener.host));
  if (!exposed) return "open-until-keys";
  if (usableKeys > 0) return "required";
  throw new Error(`listening on ${formatAddress(exposed)} (not loopback) without any API key: create one in auth.api_keys or set auth.disabled: true`);
}

const LOOPBACK = new net.BlockList();
LOOPBACK.addSubnet("127.0.0.0", 8, "ipv4");
LOOPBACK.addAddress("::1", "ipv6");

/** 127.0.0.0/8, ::1 (also IPv4-mapped) and "localhost"; "0.0.0.0", "::" and other names are not. */
export function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, "").toLowerCase();
  if (bare === "localhost") return true;
  const family = net.isIP(bare);
  return family !== 0 && LOOPBACK.check(bare, family === 4 ? "ipv4" : "ipv6");
}
