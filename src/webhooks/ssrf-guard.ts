import dns, { type LookupAddress, type LookupOptions } from "node:dns";
import { BlockList, isIP } from "node:net";
import { Agent, buildConnector } from "undici";
import { HypervisordError, InvalidArgumentError } from "../errors.ts";

/**
 * Webhook URLs are given by API callers, so a webhook must not become a way to reach the daemon's
 * own network (cloud metadata at 169.254.169.254, admin ports on loopback, the LAN). URLs are checked
 * when a webhook is created or updated, and every connection is checked again on the address it
 * actually connects to: the host is resolved once and the socket connects to that very address
 * (Host and SNI stay the name), so DNS rebinding between the check and the connect gains nothing.
 */

export interface TargetPolicy {
  /** webhooks.allow_private_targets: allow loopback, link-local and private addresses. */
  allowPrivateTargets: boolean;
}

type AddressKind = "loopback" | "link-local" | "private" | "unspecified" | "shared (CGNAT)";

const RANGES: readonly { kind: AddressKind; subnets: readonly [string, number, "ipv4" | "ipv6"][] }[] = [
  { kind: "loopback", subnets: [["127.0.0.0", 8, "ipv4"], ["::1", 128, "ipv6"]] },
  { kind: "unspecified", subnets: [["0.0.0.0", 8, "ipv4"], ["::", 128, "ipv6"]] },
  { kind: "link-local", subnets: [["169.254.0.0", 16, "ipv4"], ["fe80::", 10, "ipv6"]] },
  { kind: "private", subnets: [["10.0.0.0", 8, "ipv4"], ["172.16.0.0", 12, "ipv4"], ["192.168.0.0", 16, "ipv4"], ["fc00::", 7, "ipv6"]] },
  { kind: "shared (CGNAT)", subnets: [["100.64.0.0", 10, "ipv4"]] },
];

// BlockList matches IPv4 rules against IPv4-mapped IPv6 addresses (::ffff:127.0.0.1) too.
const BLOCK_LISTS = RANGES.map(({ kind, subnets }) => {
  const list = new BlockList();
  for (const [network, prefix, type] of subnets) list.addSubnet(network, prefix, type);
  return { kind, list };
});

/** Why `address` (an IP literal, without brackets) is refused, or undefined when it is a public address. */
export function blockedAddressKind(address: string): AddressKind | undefined {
  const family = isIP(address);
  if (family === 0) return undefined;
  const type = family === 4 ? "ipv4" : "ipv6";
  return BLOCK_LISTS.find(({ list }) => list.check(address, type))?.kind;
}

/** A connection refused by the guard: not retryable, the target will not become public by retrying. */
export class BlockedTargetError extends HypervisordError {
  readonly address: string;

  constructor(host: string, address: string, kind: AddressKind) {
    const target = host === address ? address : `${host} (${address})`;
    super("PERMISSION_DENIED", `refusing to connect to ${target}: a ${kind} address; set webhooks.allow_private_targets to allow it`);
    this.name = "BlockedTargetError";
    this.address = address;
  }
}

/**
 * Validates a webhook URL at create/update: absolute http(s), no credentials in it, and, unless
 * private targets are allowed, no IP literal or "localhost" name of a refused kind (names that
 * resolve to one are refused at connect time). Returns the parsed URL.
 */
export function checkWebhookUrl(url: string, policy: TargetPolicy, field = "url"): URL {
  if (!URL.canParse(url)) throw new InvalidArgumentError(field, "not an absolute URL");
  const parsed = new URL(url);
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new InvalidArgumentError(field, `must be an http or https URL, got ${parsed.protocol}`);
  }
  if (parsed.username || parsed.password) {
    throw new InvalidArgumentError(field, "must not contain credentials; send them in a header (e.g. Authorization)");
  }
  if (policy.allowPrivateTargets) return parsed;
  const host = parsed.hostname.replace(/^\[(.*)\]$/, "$1");
  const kind = isLocalhostName(host) ? "loopback" : blockedAddressKind(host);
  if (kind) {
    throw new InvalidArgumentError(field, `${host} is a ${kind} address; set webhooks.allow_private_targets to allow it`);
  }
  return parsed;
}

/** RFC 6761: "localhost" and names under it resolve to loopback. */
function isLocalhostName(host: string): boolean {
  const name = host.toLowerCase().replace(/\.$/, "");
  return name === "localhost" || name.endsWith(".localhost");
}

/** An undici Agent for webhook deliveries that refuses connections to refused address kinds (unless allowed). */
export function createGuardedAgent(policy: TargetPolicy, options: { connectTimeoutMs?: number } = {}): Agent {
  const agentOptions = { keepAliveTimeout: 10_000, connections: 4 };
  if (policy.allowPrivateTargets) return new Agent({ ...agentOptions, connectTimeout: options.connectTimeoutMs });
  return new Agent({ ...agentOptions, connect: guardedConnector(options.connectTimeoutMs) });
}

function guardedConnector(timeout: number | undefined): buildConnector.connector {
  const connector = buildConnector({ lookup: guardedLookup, timeout });
  return (options, callback) => {
    // An IP literal is connected to without a lookup: check it here.
    const kind = blockedAddressKind(options.hostname);
    if (kind) {
      callback(new BlockedTargetError(options.hostname, options.hostname, kind), null);
      return;
    }
    connector(options, callback);
  };
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * dns.lookup keeping only allowed addresses: the socket connects to what this returns, so the
 * check holds for the address actually connected to. Fails when every address is refused.
 */
function guardedLookup(hostname: string, options: LookupOptions, callback: LookupCallback): void {
  dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, []);
    const allowed = addresses.filter((a) => !blockedAddressKind(a.address));
    const first = allowed[0];
    if (!first) {
      const refused = addresses[0];
      const error = refused
        ? new BlockedTargetError(hostname, refused.address, blockedAddressKind(refused.address)!)
        : Object.assign(new Error(`${hostname} resolved to no address`), { code: "ENOTFOUND" });
      return callback(error, []);
    }
    if (options.all) return callback(null, allowed);
    callback(null, first.address, first.family);
  });
}
