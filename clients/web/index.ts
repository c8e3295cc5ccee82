/**
 * Browser client of hypervisord: Connect over fetch (@connectrpc/connect-web), the same API as
 * clients/node. The URL is the daemon's HTTP listener, http(s)://host:port (it must list the
 * page's origin in cors_allowed_origins). No Node imports.
 */
import { createConnectTransport } from "@connectrpc/connect-web";
import { standardInterceptors, wrapTransport, type BaseClientOptions, type HypervisordClient } from "../core/hypervisord-client.ts";

export interface WebClientOptions extends BaseClientOptions {
  /** JSON is easier to read in the browser's network panel; binary is smaller. Default false (JSON). */
  useBinaryFormat?: boolean;
  /** A fetch implementation (default: globalThis.fetch). */
  fetch?: typeof globalThis.fetch;
}

export function createHypervisordClient(options: WebClientOptions): HypervisordClient {
  // Relative URLs ("/", "/api") resolve against the page; tsconfig has no DOM lib, hence the cast.
  const page = (globalThis as { location?: { href: string } }).location?.href;
  const url = new URL(options.url, page);
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new TypeError(`unsupported URL "${options.url}": the browser client speaks Connect over http(s)://`);
  }
  const transport = createConnectTransport({
    baseUrl: url.href.replace(/\/$/, ""),
    useBinaryFormat: options.useBinaryFormat ?? false,
    interceptors: standardInterceptors(options),
    ...(options.fetch && { fetch: options.fetch }),
  });
  // fetch keeps no connection of ours open: nothing to close.
  return wrapTransport(transport, options, () => {});
}

export * from "../core/client-api.ts";
