import crypto from "node:crypto";
import type http from "node:http";

export async function readBody(req: http.IncomingMessage, limit = 1 << 20): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new Error(`request body over ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** The scheme and host the client used: the https twin and the plain server share the handlers. */
export function baseUrl(req: http.IncomingMessage): string {
  const tls = Boolean((req.socket as { encrypted?: boolean }).encrypted);
  return `${tls ? "https" : "http"}://${req.headers.host}`;
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = body === undefined ? "" : JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": String(Buffer.byteLength(text)),
    "x-ms-request-id": crypto.randomUUID(),
    "x-ms-correlation-request-id": crypto.randomUUID(),
    ...headers,
  });
  res.end(text);
}

/** ARM's error body, `{"error":{"code","message"}}`. */
export class ArmError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export function sendArmError(res: http.ServerResponse, err: ArmError): void {
  sendJson(res, err.status, { error: { code: err.code, message: err.message } }, err.headers);
}

export function sendXmlError(res: http.ServerResponse, status: number, code: string, message: string, headers: Record<string, string> = {}): void {
  const requestId = crypto.randomUUID();
  const body = `<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code><Message>${message}\nRequestId:${requestId}\nTime:${new Date().toISOString()}</Message></Error>`;
  res.writeHead(status, {
    "content-type": "application/xml",
    "content-length": String(Buffer.byteLength(body)),
    "x-ms-request-id": requestId,
    "x-ms-error-code": code,
    ...headers,
  });
  res.end(body);
}
