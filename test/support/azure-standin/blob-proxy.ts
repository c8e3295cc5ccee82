import http from "node:http";
import type { Ctx } from "./context.ts";
import { sendXmlError } from "./http-util.ts";

const PIECE = 16 * 1024;

/**
 * The host of every accessSAS: forwards reads to Azurite (which checks the SAS signature and expiry itself),
 * refuses SAS tokens that were never handed out or were revoked by endGetAccess (as a managed disk's SAS stops
 * working then), counts requests and body bytes, and applies the blob faults.
 */
export function createBlobProxy(ctx: Ctx, azurite: { host: string; port: number }): http.Server {
  // faults.blobBytesPerSecond is the rate of all bodies together (as one account's egress limit), so that a test
  // slows a download the same whatever its parallelism: each piece books the next slot of the shared line.
  let lineFreeAt = 0;
  const pace = async (bytes: number): Promise<void> => {
    const rate = ctx.faults.blobBytesPerSecond;
    if (rate <= 0) return;
    lineFreeAt = Math.max(lineFreeAt, Date.now()) + (bytes / rate) * 1000;
    const wait = lineFreeAt - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  };
  return http.createServer((req, res) => {
    ctx.counts.blobRequests++;
    const url = new URL(req.url ?? "/", "http://blob");
    const pageList = url.searchParams.get("comp") === "pagelist";
    if (pageList) ctx.counts.pageListRequests++;
    const sig = url.searchParams.get("sig");
    const blob = sig ? ctx.state.sas.get(sig) : undefined;
    if (!blob || !url.pathname.endsWith(`/${blob}`)) {
      req.resume();
      return sendXmlError(res, 403, "AuthenticationFailed",
        "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.");
    }
    const throttle = ctx.faults.blobThrottle;
    if (throttle.left > 0) {
      throttle.left--;
      req.resume();
      return sendXmlError(res, 503, "ServerBusy", "The server is busy.", { "retry-after": String(throttle.retryAfterSeconds) });
    }
    const headers = { ...req.headers };
    delete headers.host;
    delete headers.connection;
    const upstream = http.request({ host: azurite.host, port: azurite.port, method: req.method, path: req.url, headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      const ok = (answer.statusCode ?? 500) < 300;
      // A cut goes to a body long enough to be cut, so that a test's cuts all happen whatever its range sizes.
      const length = Number(answer.headers["content-length"] ?? 0);
      const cut = req.method === "GET" && !pageList && ok ? ctx.faults.blobCuts.find((c) => c.left > 0 && length > c.afterBytes) : undefined;
      if (cut) {
        cut.left--;
        ctx.counts.blobCuts++;
      }
      void pump(ctx, answer, res, pace, cut?.afterBytes).catch(() => res.destroy());
    });
    upstream.on("error", (err) => {
      if (!res.headersSent) sendXmlError(res, 502, "BadGateway", `Azurite: ${err.message}`);
      else res.destroy();
    });
    res.on("close", () => upstream.destroy());
    req.pipe(upstream);
  });
}

/** Copies the body, paced, destroying the socket after `cutAfter` bytes. */
async function pump(ctx: Ctx, from: http.IncomingMessage, to: http.ServerResponse, pace: (bytes: number) => Promise<void>, cutAfter?: number): Promise<void> {
  let sent = 0;
  for await (const chunk of from as AsyncIterable<Buffer>) {
    for (let at = 0; at < chunk.length; at += PIECE) {
      let piece = chunk.subarray(at, at + PIECE);
      if (cutAfter !== undefined && sent + piece.length >= cutAfter) {
        piece = piece.subarray(0, cutAfter - sent);
        if (piece.length) await write(to, piece);
        ctx.counts.blobBytes += piece.length;
        from.destroy();
        to.socket?.destroy();
        to.destroy();
        return;
      }
      if (to.destroyed) {
        from.destroy();
        return;
      }
      await write(to, piece);
      sent += piece.length;
      ctx.counts.blobBytes += piece.length;
      await pace(piece.length);
    }
  }
  to.end();
}

function write(to: http.ServerResponse, piece: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    if (to.destroyed) return reject(new Error("client went away"));
    if (to.write(piece)) return resolve();
    const onDrain = () => {
      to.off("close", onClose);
      resolve();
    };
    const onClose = () => {
      to.off("drain", onDrain);
      reject(new Error("client went away"));
    };
    to.once("drain", onDrain);
    to.once("close", onClose);
  });
}
