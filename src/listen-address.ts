/*
 * A listener's host and port. Its own module, below every folder: the listeners (server, metrics), the
 * startup rule (auth) and the config that parses it all speak of addresses, and none of them may import another's.
 */

export interface ListenAddress {
  host: string;
  port: number;
}

/** "127.0.0.1:8080", or "[::1]:8080" for an IPv6 host. */
export function formatAddress(address: ListenAddress): string {
  return address.host.includes(":") ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}
