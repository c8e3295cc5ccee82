import http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { codeToHttpStatus, endStreamFlag, endStreamToJson, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { retryHeaders, type CallStatus } from "../rpc/status.ts";
import type { NodeRequest, NodeResponse } from "./http-server.ts";

/**
 * Ends a call that is refused before its body is read (no valid credentials), in the shape its protocol
 * expects, and stops the body from coming: HTTP/1.1 half-closes the connection after the answer, HTTP/2
 * resets the stream with NO_ERROR (RFC 9113 8.1: the client may stop sending). Told apart by content type:
 * gRPC and gRPC-Web as a trailers-only response, Connect streaming as an end-of-stream message, Connect
 * unary (and anything else) as an HTTP error status with the Connect JSON error.
 */
export function refuseBeforeBody(req: NodeRequest, res: NodeResponse, status: CallStatus): void {
  const contentType = String(req.headers["content-type"] ?? "").toLowerCase();
  const retry = retryHeaders(status) ?? {};
  const error = new ConnectError(status.message, status.number as Code);
  if (contentType.startsWith("application/grpc")) {
    const grpcWeb = contentType.startsWith("application/grpc-web");
    const headers = {
      "content-type": grpcWeb ? contentType : "application/grpc",
      "grpc-status": String(status.number),
      "grpc-message": encodeURIComponent(status.message),
      ...retry,
    };
    if (res instanceof http2.Http2ServerResponse) {
      // Trailers-only: one HEADERS frame that ends the stream, as gRPC clients expect for an early status.
      res.stream.respond({ ":status": 200, ...headers }, { endStream: true });
      // Queued after the HEADERS frame, so it cannot overtake it.
      if (!res.stream.closed) res.stream.close(http2.constants.NGHTTP2_NO_ERROR);
      return;
    }
    return answer(res, 200, headers, "");
  }
  if (contentType.startsWith("application/connect+")) {
    const end = JSON.stringify(endStreamToJson(new Headers(), error, undefined));
    return answer(res, 200, { "content-type": contentType, ...retry }, Buffer.from(encodeEnvelope(endStreamFlag, Buffer.from(end))));
  }
  return answer(res, codeToHttpStatus(error.code), { "content-type": "application/json", ...retry }, Buffer.from(errorToJsonBytes(error, undefined)));
}

function answer(res: NodeResponse, httpStatus: number, headers: Record<string, string>, body: Buffer | string): void {
  res.writeHead(httpStatus, headers);
  res.end(body);
  // HTTP/2: stopUnreadBody, which the HTTP server applies to every answer.
  if (res instanceof http2.Http2ServerResponse) return;
  // HTTP/1.1: "Connection: close" would make Node destroy the socket with the body unread, and the RST that
  // sends can wipe the answer from the client's buffer before it is read. So: FIN after the answer, what
  // still comes is dropped as it arrives (never buffered), and the socket goes after a short linger.
  const socket = res.socket;
  res.once("finish", () => {
    socket?.end();
    setTimeout(() => socket?.destroy(), LINGER_MS).unref();
  });
}

/** How long an HTTP/1.1 connection refused before its body is read may go on sending (dropped) before it is cut. */
const LINGER_MS = 2000;

/**
 * An HTTP/2 request answered while its body still comes (an oversize message, a refusal) is reset with
 * NO_ERROR once the answer is out, which tells the client to stop sending (RFC 9113 8.1) and frees the
 * stream now rather than at the request timeout. Only once the trailers are queued: a reset queued earlier
 * overtakes the response's last frames (compat responses always end with trailers, even empty ones).
 */
export function stopUnreadBody(req: http2.Http2ServerRequest, res: http2.Http2ServerResponse): void {
  const { stream } = res;
  stream.once("wantTrailers", () => setImmediate(() => {
    if (!req.complete && !stream.closed) stream.close(http2.constants.NGHTTP2_NO_ERROR);
  }));
}
