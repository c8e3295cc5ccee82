import http from "node:http";
import type { AddressInfo } from "node:net";
import { after } from "node:test";

export interface ReceivedRequest {
  /** The request's path with its query, as sent. */
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** Date.now() once the body had arrived. */
  time: number;
}

/**
 * How to answer the nth request (1-based): a number is the status code to send; anything else means the
 * reply wrote the response itself (or holds it back, to play a receiver that never answers).
 */
export type Reply = (request: ReceivedRequest, res: http.ServerResponse, nth: number) => unknown;

export interface WebhookReceiver {
  /** http://127.0.0.1:<port>/hook */
  url: string;
  port: number;
  /** Every request so far, in arrival order. */
  requests: ReceivedRequest[];
  /** May be replaced while the receiver runs. */
  reply: Reply;
  /** Stops listening and drops open connections; a second close is a no-op. */
  close(): Promise<void>;
  /** Listens again on the same port (after close), keeping what was received. */
  reopen(): Promise<void>;
}

const open = new Set<WebhookReceiver>();
// Registered when a test file imports this module, so at the file's top level: runs once its tests are done.
after(async () => {
  for (const receiver of open) await receiver.close();
});

/** A real HTTP webhook receiver on 127.0.0.1 that records every request; `reply` a status (default 200) or a function. */
export async function startWebhookReceiver(options: { reply?: Reply | number; port?: number } = {}): Promise<WebhookReceiver> {
  const { reply = 200, port = 0 } = options;
  let server: http.Server | undefined;
  const listen = (on: number) => new Promise<void>((resolve) => {
    const listening = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("end", () => {
        const request = { url: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks).toString("utf8"), time: Date.now() };
        receiver.requests.push(request);
        const status = receiver.reply(request, res, receiver.requests.length);
        if (typeof status === "number") res.writeHead(status).end();
      });
    });
    server = listening;
    listening.listen(on, "127.0.0.1", () => {
      receiver.port = (listening.address() as AddressInfo).port;
      receiver.url = `http://127.0.0.1:${receiver.port}/hook`;
      open.add(receiver);
      resolve();
    });
  });
  const receiver: WebhookReceiver = {
    url: "",
    port,
    requests: [],
    reply: typeof reply === "number" ? () => reply : reply,
    close: () => new Promise<void>((resolve) => {
      const closing = server;
      server = undefined;
      open.delete(receiver);
      if (!closing) return resolve();
      closing.closeAllConnections();
      closing.close(() => resolve());
    }),
    reopen: () => listen(receiver.port),
  };
  await listen(port);
  return receiver;
}
