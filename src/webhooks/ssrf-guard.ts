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

type RangeKind =
  | "loopback" | "link-local" | "private" | "unspecified" | "shared (CGNAT)" | "benchmarking" | "IETF protocol assignment"
  | "reserved" | "broadcast" | "multicast" | "IPv4-compatible (deprecated)" | "site-local (deprecated)";
/** A refused range, or one found in the IPv4 address a NAT64 or 6to4 address embeds. */
type AddressKind = RangeKind | `${RangeKind} (embedded in ${string})`;

const RANGES: readonly { kind: RangeKind; subnets: readonly [string, number, "ipv4" | "ipv6"][] }[] = [
  { kind: "loopback", subnets: [["127.0.0.0", 8, "ipv4"], ["::1", 128, "ipv6"]] },
  { kind: "unspecified", subnets: [["0.0.0.0", 8, "ipv4"], ["::", 128, "ipv6"]] },
  { kind: "link-local", subnets: [["169.254.0.0", 16, "ipv4"], ["fe80::", 10, "ipv6"]] },
  { kind: "private", subnets: [["10.0.0.0", 8, "ipv4"], ["172.16.0.0", 12, "ipv4"], ["192.168.0.0", 16, "ipv4"], ["fc00::", 7, "ipv6"]] },
  { kind: "shared (CGNAT)", subnets: [["100.64.0.0", 10, "ipv4"]] },
  // RFC 2544: devices under test, often the lab network itself.
  { kind: "benchmarking", subnets: [["198.18.0.0", 15, "ipv4"]] },
  // RFC 6890: DS-Lite, NAT64 discovery and other protocol addresses, never a public host.
  { kind: "IETF protocol assignment", subnets: [["192.0.0.0", 24, "ipv4"]] },
  // Before "reserved": 255.255.255.255 is inside 240.0.0.0/4 but is named for what it is.
  { kind: "broadcast", subnets: [["255.255.255.255", 32, "ipv4"]] },
  { kind: "reserved", subnets: [["240.0.0.0", 4, "ipv4"]] },
  { kind: "multicast", subnets: [["224.0.0.0", 4, "ipv4"], ["ff00::", 8, "ipv6"]] },
  // ::a.b.c.d (RFC 4291, deprecated): stacks that still accept it reach the IPv4 host, so none is allowed.
  { kind: "IPv4-compatible (deprecated)", subnets: [["::", 96, "ipv6"]] },
  { kind: "site-local (deprecated)", subnets: [["fec0::", 10, "ipv6"]] },
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
  const kind = BLOCK_LISTS.find(({ list }) => list.check(address, type))?.kind;
  if (kind || family === 4) return kind;
  return embeddedIpv4Kind(address);
}

/**
 * NAT64 (64:ff9b::/96, RFC 6052) and 6to4 (2002::/16, RFC 3056) addresses carry an IPv4 address the
 * packets end up at: 64:ff9b::127.0.0.1 or 2002:7f00:1:: reach loopback through the gateway. Such an
 * address is refused when the IPv4 address it embeds is.
 */
function embeddedIpv4Kind(address: string): AddressKind | undefined {
  const words = ipv6Words(address);
  let embedded: [number, number] | undefined;
  let prefix = "";
  if (words[0] === 0x64 && words[1] === 0xff9b && words.slice(2, 6).every((w) => w === 0)) {
    embedded = [words[6]!, words[7]!];
    prefix = "NAT64 64:ff9b::/96";
  } else if (words[0] === 0x2002) {
    embedded = [words[1]!, words[2]!];
    prefix = "6to4 2002::/16";
  }
  if (!embedded) return undefined;
  const ipv4 = [embedded[0] >> 8, embedded[0] & 0xff, embedded[1] >> 8, embedded[1] & 0xff].join(".");
  const kind = BLOCK_LISTS.find(({ list }) => list.check(ipv4, "ipv4"))?.kind;
  return kind && `${kind} (embedded in ${prefix}: ${ipv4})`;
}

/** The eight 16-bit words of a valid IPv6 literal (isIP 6), "::" expanded, a trailing dotted quad and a zone (%eth0) handled. */
function ipv6Words(address: string): number[] {
  let text = address.split("%")[0]!;
  const tail: number[] = [];
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    tail.push((a << 8) | b, (c << 8) | d);
    text = text.slice(0, dotted.index);
    if (text.endsWith(":") && !text.endsWith("::")) text = text.slice(0, -1);
  }
  const parse = (part: string) => (part === "" ? [] : part.split(":").map((word) => parseInt(word, 16)));
  const halves = text.split("::");
  if (halves.length === 1) return [...parse(halves[0]!), ...tail];
  const head = parse(halves[0]!);
  const rest = [...parse(halves[1]!), ...tail];
  return [...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest];
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
