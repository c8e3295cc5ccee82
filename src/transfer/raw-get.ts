import net from "node:net";
import tls, { type TLSSocket } from "node:tls";
import { HypervisordError } from "../errors.ts";

// One HTTP/1.1 GET on its own connection, its body read by the socket straight into the caller's buffers
// (net/tls `onread` with a buffer function): no Buffer allocated per TLS record, no HTTP parser copying the
// body, no stream in between. The download path's CPU per byte is the point (issue 17): with undici's
// request() and a pipeline, 1 GiB over TLS cost ~1.5 CPU-s more here than hashing it twice did.
// Only what a disk download needs: a Content-Length, chunked or until-close body, no redirects, no keep-alive.

export interface RawTls {
  /** Verify the server's certificate against the CAs. */
  rejectUnauthorized: boolean;
  /** After the handshake, before the request is sent: throws to refuse the peer (a pinned thumbprint). */
  checkPeer?(socket: TLSSocket, hostname: string): void;
}

export interface RawGetOptions {
  headers: Record<string, string>;
  signal: AbortSignal;
  /** For https URLs; default: verify the certificate. */
  tls?: RawTls;
  /** No byte for this long (connecting, waiting for headers or mid-body) is a cut. Default 300 s, as undici's. */
  idleTimeoutMs?: number;
}

export interface ResponseHead {
  statusCode: number;
  /** Lower-case names; repeated headers joined with ", ". */
  headers: Record<string, string>;
}

export interface RawGetSink {
  /**
   * The status and headers. Returns whether the body is wanted (when not, the connection is closed at once).
   * May throw (the request is aborted and rawGet rejects with it) or return a promise (the body waits).
   */
  start(head: ResponseHead): boolean | Promise<boolean>;
  /** Where the socket reads the next body bytes into (at least one byte long). */
  region(): Buffer;
  /** `bytes` of the body landed at the start of the last region. A promise pauses the socket until it settles. */
  commit(bytes: number): void | Promise<void>;
}

const HEAD_LIMIT = 64 * 1024;
const CHUNK_LINE_LIMIT = 4096;

/** The connection broke, ended early or idled out: the bytes committed so far are good, a Range request resumes. */
export class ConnectionCutError extends Error {
  readonly code = "HYPERVISORD_CONNECTION_CUT";
}
const DEFAULT_IDLE_TIMEOUT_MS = 300_000;

/**
 * GETs `url` and passes the body to `sink`. Resolves with the response head once the body is complete (by
 * Content-Length, the last chunk, or the connection's end when there is neither) or, when the body is not wanted, at once.
 * Rejects with a ConnectionCutError when the connection breaks or idles out (the bytes committed so far are
 * good), with the TLS error when the certificate is refused, the sink's error, or `signal.reason`.
 */
export function rawGet(url: URL, options: RawGetOptions, sink: RawGetSink): Promise<ResponseHead> {
  options.signal.throwIfAborted();
  return new Promise<ResponseHead>((resolve, reject) => {
    const { signal } = options;
    const secure = url.protocol === "https:";
    const hostname = url.hostname.replace(/^\[|\]$/g, "");
    const port = Number(url.port) || (secure ? 443 : 80);
    const idleMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    let head: ResponseHead | undefined;
    /** The status line and headers, until they are complete. */
    const headBuffer = Buffer.allocUnsafe(HEAD_LIMIT);
    let headBytes = 0;
    /** Body bytes read into headBuffer (with the head, while paused, or chunked framing) and not in the sink yet. */
    let queued: Buffer | undefined;
    /** Body bytes still expected; undefined: until the connection ends. */
    let remaining: number | undefined;
    let settled = false;
    let paused = false;

    const finish = (error?: unknown) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener("abort", onAbort);
      socket.destroy();
      if (error !== undefined) reject(error);
      else resolve(head!);
    };
    const onAbort = () => finish(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    const cut = (why: string, cause?: unknown) => finish(new ConnectionCutError(`${url.host} ${why}`, cause ? { cause } : {}));

    /** Pauses the socket until `pending` settles (a rejection ends the request with it). */
    const hold = (pending: Promise<unknown>, then: (value: unknown) => void) => {
      paused = true;
      socket.pause();
      pending.then((value) => {
        if (settled) return;
        paused = false;
        then(value);
        drainQueued();
        if (!settled && !paused) socket.resume();
      }, finish);
    };

    const bodyLanded = (bytes: number) => {
      if (remaining !== undefined) {
        if (bytes > remaining) return finish(new HypervisordError("INTERNAL", `${url.host} sent more body bytes than its Content-Length`));
        remaining -= bytes;
      }
      let pending: void | Promise<void>;
      try {
        pending = sink.commit(bytes);
      } catch (error) {
        return finish(error);
      }
      if (remaining === 0) {
        if (pending) pending.then(() => finish(), finish);
        else finish();
      } else if (pending) {
        hold(pending, () => undefined);
      }
    };

    /** Copies queued body bytes into the sink's regions (decoding chunked framing on the way), until it pauses. */
    const drainQueued = () => {
      while (queued && !paused && !settled) {
        if (chunks && chunks.phase !== "data") {
          readChunkLine();
          continue;
        }
        const region = sink.region();
        const n = Math.min(region.length, queued.length, chunks ? chunks.left : Infinity);
        queued.copy(region, 0, 0, n);
        take(n);
        if (chunks && (chunks.left -= n) === 0) chunks.phase = "crlf";
        bodyLanded(n);
      }
    };
    const take = (bytes: number) => {
      queued = bytes < queued!.length ? queued!.subarray(bytes) : undefined;
    };

    /**
     * Transfer-Encoding: chunked (a host that streams a disk whose size it does not know up front): the body
     * goes through headBuffer and queued, its framing read here, its data copied into the sink's regions.
     */
    let chunks: { phase: "size" | "data" | "crlf" | "trailer"; left: number; line: string } | undefined;
    const readChunkLine = () => {
      const state = chunks!;
      const newline = queued!.indexOf(10);
      if (newline < 0) {
        state.line += queued!.toString("latin1");
        queued = undefined;
        if (state.line.length > CHUNK_LINE_LIMIT) finish(new HypervisordError("INTERNAL", `${url.host} sent a chunk line over ${CHUNK_LINE_LIMIT} bytes`));
        return;
      }
      const line = (state.line + queued!.toString("latin1", 0, newline)).replace(/\r$/, "");
      state.line = "";
      take(newline + 1);
      if (state.phase === "crlf") {
        if (line !== "") return finish(new HypervisordError("INTERNAL", `${url.host} sent chunk data longer than its size`));
        state.phase = "size";
      } else if (state.phase === "size") {
        const size = /^([0-9a-fA-F]{1,12})\s*(;.*)?$/.exec(line);
        if (!size) return finish(new HypervisordError("INTERNAL", `${url.host} sent a malformed chunk size line`));
        state.left = parseInt(size[1]!, 16);
        state.phase = state.left === 0 ? "trailer" : "data";
      } else if (line === "") {
        remaining = 0; // the last chunk and its trailer: the body is complete
        finish();
      }
    };

    const onHead = (end: number) => {
      head = parseHead(headBuffer.toString("latin1", 0, end));
      if (!head) return finish(new HypervisordError("INTERNAL", `${url.host} sent a malformed HTTP response head`));
      const length = head.headers["content-length"];
      remaining = length !== undefined && /^\d+$/.test(length) ? Number(length) : undefined;
      if (headBytes > end + 4) queued = Buffer.from(headBuffer.subarray(end + 4, headBytes));
      const go = (wanted: unknown) => {
        if (!wanted || remaining === 0) return finish();
        const encoding = head!.headers["transfer-encoding"]?.toLowerCase();
        if (encoding === "chunked") {
          chunks = { phase: "size", left: 0, line: "" };
          remaining = undefined;
        } else if (encoding && encoding !== "identity") {
          return finish(new HypervisordError("INTERNAL", `${url.host} sent a body with Transfer-Encoding ${encoding}, which disk downloads do not take`));
        }
        drainQueued();
      };
      try {
        const wanted = sink.start(head);
        if (typeof wanted === "boolean") go(wanted);
        else hold(wanted, go);
      } catch (error) {
        finish(error);
      }
    };

    // Node asks for the next read's buffer right after each callback and keeps it until that read. A region
    // handed out while the response is paused (the sink may write or swap its buffers meanwhile) or while
    // head bytes wait could be stale by then: such reads go to headBuffer (free once the head is parsed) and
    // are copied like the bytes that came with the head.
    const onread = {
      buffer: () => (!head ? headBuffer.subarray(headBytes) : paused || queued || chunks ? headBuffer : sink.region()),
      callback: (bytes: number, buffer: Buffer) => {
        if (settled) return false;
        if (head && buffer === headBuffer) {
          const landed = Buffer.from(buffer.subarray(0, bytes));
          queued = queued ? Buffer.concat([queued, landed]) : landed;
          drainQueued();
        } else if (head) {
          bodyLanded(bytes);
        } else {
          headBytes += bytes;
          const end = headBuffer.subarray(0, headBytes).indexOf("\r\n\r\n");
          if (end >= 0) onHead(end);
          else if (headBytes === HEAD_LIMIT) finish(new HypervisordError("INTERNAL", `${url.host} sent a response head over ${HEAD_LIMIT} bytes`));
        }
        return !paused && !settled;
      },
    };

    const request = () => {
      const lines = [`GET ${url.pathname}${url.search} HTTP/1.1`, `Host: ${url.host}`, "Connection: close"];
      for (const [name, value] of Object.entries(options.headers)) lines.push(`${name}: ${value}`);
      socket.write(`${lines.join("\r\n")}\r\n\r\n`);
    };

    const policy = options.tls ?? { rejectUnauthorized: true };
    const socket: net.Socket = secure
      ? tls.connect({
        host: hostname, port,
        // Node reads the decrypted bytes into onread's buffer (tls.connect documents it; @types/node lacks it).
        ...({ onread } as tls.ConnectionOptions),
        rejectUnauthorized: policy.rejectUnauthorized,
        ...(net.isIP(hostname) ? {} : { servername: hostname }),
      }, () => {
        try {
          policy.checkPeer?.(socket as TLSSocket, hostname);
        } catch (error) {
          return finish(error);
        }
        request();
      })
      : net.connect({ host: hostname, port, onread }, request);
    socket.setNoDelay(true);
    socket.setTimeout(idleMs, () => cut(`sent nothing for ${Math.round(idleMs / 1000)} s`));
    /** The whole body arrived; its last commit may still be pending: the connection's end is no cut then. */
    const complete = () => remaining === 0;
    socket.on("error", (error: NodeJS.ErrnoException) => {
      if (complete()) return;
      // A refused certificate is not a cut: the caller maps it (an untrusted certificate, a wrong pin).
      if (!head && isCertificateError(error)) return finish(error);
      cut(`broke the connection${head ? " mid-body" : ""}: ${error.code ?? ""} ${error.message}`.replace(/  +/g, " "), error);
    });
    socket.on("end", () => {
      if (complete()) return;
      if (head && remaining === undefined && !chunks) return finish();
      cut(head ? `closed the connection ${remaining} body bytes short` : "closed the connection before a response");
    });
    socket.on("close", () => complete() || cut("closed the connection"));
  });
}

function isCertificateError(error: NodeJS.ErrnoException): boolean {
  return /CERT|SELF_SIGNED|UNABLE_TO_|HOSTNAME|ERR_TLS/.test(error.code ?? "");
}

/** The status line and headers; undefined when malformed. */
function parseHead(text: string): ResponseHead | undefined {
  const lines = text.split("\r\n");
  const status = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0] ?? "");
  if (!status) return undefined;
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon <= 0) return undefined;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] !== undefined ? `${headers[name]}, ${value}` : value;
  }
  return { statusCode: Number(status[1]), headers };
}
