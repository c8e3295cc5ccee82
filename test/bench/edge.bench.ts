// Edge benchmark (npm run bench:edge): what it takes to deny service before authentication. A measurement,
// not a test: it prints figures and exits 0 unless something crashed. Against a daemon process (fake
// providers, an API key configured, default server.* settings), two phases:
//
//  (a) idle connections: TCP connections that send nothing, opened in batches to both listeners (half each)
//      up to BENCH_SOCKETS; after each batch a real client (a new connection each time) calls GET /healthz and
//      gRPC GetStatus. Printed: the sockets open when a real call first failed (or "none failed"), how many the
//      daemon still holds once all are open, and how many it holds after the first-bytes deadline. The daemon
//      runs with a file-descriptor limit of BENCH_DAEMON_NOFILE (prlimit), so that exhaustion is reached with
//      a bounded number of sockets (the same process with 20,000 descriptors needed 19,990).
//  (b) bodies without a key: BENCH_BODIES Connect JSON bodies of BENCH_BODY_MB MiB each to SubmitJob over
//      HTTP/1.1 with no API key (a fresh daemon); printed: the daemon's RSS before, after and at its peak
//      (VmHWM), the answer and how much of each body the client got to send.
//
// BENCH_ROOT=<checkout> runs the daemon of another checkout (e.g. a worktree of an older commit) with this
// script: the figures before and after a change, side by side.
// Knobs: BENCH_SOCKETS=3000 BENCH_BATCH=100 BENCH_DAEMON_NOFILE=2048 BENCH_BODY_MB=1024 BENCH_BODIES=3
// BENCH_SKIP_IDLE=1 BENCH_SKIP_BODIES=1
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { GetStatusRequestSchema, HypervisordService } from "../../gen/hypervisord/v1/service_pb.js";
import { grpcServiceDefinition } from "../../src/server/grpc-server.ts";

const envInt = (name: string, fallback: number) => {
  const value = process.env[name];
  return value !== undefined && value !== "" && Number.isFinite(Number(value)) ? Number(value) : fallback;
};
const ROOT = path.resolve(process.env.BENCH_ROOT ?? path.join(import.meta.dirname, "../.."));
const SOCKETS = envInt("BENCH_SOCKETS", 3000);
const BATCH = envInt("BENCH_BATCH", 100);
const DAEMON_NOFILE = envInt("BENCH_DAEMON_NOFILE", 2048);
const BODY_MB = envInt("BENCH_BODY_MB", 1024);
const BODIES = envInt("BENCH_BODIES", 3);
/** The default server.first_bytes_timeout is 10 s: held sockets are counted again after this long. */
const AFTER_DEADLINE_MS = 11_000;
const PROBE_TIMEOUT_MS = 2000;
const KEY = `hvd_edge-bench-key-${"b".repeat(28)}`;

interface Daemon {
  child: ChildProcess;
  pid: number;
  http: string;
  grpc: string;
  stop(): Promise<void>;
}

/** The daemon of ROOT (its test/support/fake-daemon.ts) on free ports, with `nofile` descriptors at most. */
async function startDaemon(nofile: number): Promise<Daemon> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hvd-edge-bench-"));
  const config = path.join(dir, "hypervisord.yaml");
  fs.writeFileSync(config, `auth:\n  api_keys:\n    - {name: bench, key: ${KEY}, role: admin}\n`);
  const child = spawn("prlimit", [
    `--nofile=${nofile}:${nofile}`, process.execPath, "--import", "tsx", path.join(ROOT, "test/support/fake-daemon.ts"),
    "--config", config, "--data-dir", path.join(dir, "data"), "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
    "--allowed-output-root", path.join(dir, "exports"),
  ], { cwd: ROOT, env: { ...process.env, HYPERVISORD_RATE_LIMIT_RPS: "0" }, stdio: ["ignore", "pipe", "inherit"] });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const ready = await new Promise<{ grpc: string; http: string }>((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout! });
    lines.on("line", (line) => {
      if (!line.includes('"hypervisord ready"')) return;
      const record = JSON.parse(line) as { grpc_address: string; http_address: string };
      resolve({ grpc: record.grpc_address, http: record.http_address });
    });
    void exited.then(() => reject(new Error("the daemon exited before it was ready")));
  });
  return {
    child, pid: child.pid!, ...ready,
    async stop() {
      child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(killer);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

const split = (address: string) => {
  const i = address.lastIndexOf(":");
  return { host: address.slice(0, i), port: Number(address.slice(i + 1)) };
};

/** A TCP connection that sends nothing; null when it does not connect within a second. */
function idleSocket(address: string): Promise<net.Socket | null> {
  return new Promise((resolve) => {
    const socket = net.connect(split(address));
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(null);
    }, 1000);
    socket.on("error", () => {
      clearTimeout(timer);
      resolve(null);
    });
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.resume();
      resolve(socket);
    });
  });
}

/** GET /healthz on a new connection: true when it answered 200 in time. */
function probeHttp(address: string): Promise<boolean> {
  return new Promise((resolve) => {
    const request = http.get({ ...split(address), path: "/healthz", agent: false, timeout: PROBE_TIMEOUT_MS }, (response) => {
      response.resume();
      resolve(response.statusCode === 200);
    });
    request.on("timeout", () => request.destroy());
    request.on("error", () => resolve(false));
  });
}

const Client = grpc.makeGenericClientConstructor(grpcServiceDefinition(HypervisordService), "HypervisordService");

/** GetStatus with the key on a new grpc-js channel: true when it worked in time. */
function probeGrpc(address: string): Promise<boolean> {
  const client = new Client(address, grpc.credentials.createInsecure()) as unknown as grpc.Client & Record<string, (...args: unknown[]) => void>;
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${KEY}`);
  return new Promise<boolean>((resolve) => {
    client.GetStatus!(create(GetStatusRequestSchema), metadata, { deadline: Date.now() + PROBE_TIMEOUT_MS }, (err: grpc.ServiceError | null) => resolve(!err));
  }).finally(() => client.close());
}

const openCount = (sockets: net.Socket[]) => sockets.filter((s) => !s.destroyed && !s.readableEnded).length;

async function idleConnections(): Promise<void> {
  const daemon = await startDaemon(DAEMON_NOFILE);
  const sockets: net.Socket[] = [];
  let attempted = 0;
  let firstFailure: string | undefined;
  try {
    console.log(`(a) idle connections: up to ${SOCKETS} sockets, half to each listener; the daemon has ${DAEMON_NOFILE} file descriptors`);
    while (attempted < SOCKETS) {
      const batch = await Promise.all(Array.from({ length: Math.min(BATCH, SOCKETS - attempted) }, (_, i) =>
        idleSocket((attempted + i) % 2 === 0 ? daemon.http : daemon.grpc)));
      attempted += batch.length;
      for (const socket of batch) if (socket) sockets.push(socket);
      const [httpOk, grpcOk] = await Promise.all([probeHttp(daemon.http), probeGrpc(daemon.grpc)]);
      if (!firstFailure && (!httpOk || !grpcOk)) {
        firstFailure = `${attempted} sockets opened (${openCount(sockets)} still open): ${[!httpOk && "GET /healthz", !grpcOk && "gRPC GetStatus"].filter(Boolean).join(" and ")} failed`;
      }
    }
    const heldNow = openCount(sockets);
    console.log(`    first real call that failed: ${firstFailure ?? `none failed (${attempted} sockets opened)`}`);
    console.log(`    sockets held once all were opened: ${heldNow} of ${attempted} (${sockets.length} connected)`);
    await sleep(AFTER_DEADLINE_MS);
    const [httpOk, grpcOk] = await Promise.all([probeHttp(daemon.http), probeGrpc(daemon.grpc)]);
    console.log(`    sockets held ${AFTER_DEADLINE_MS / 1000} s later: ${openCount(sockets)}; real calls then: /healthz ${httpOk ? "ok" : "FAILED"}, GetStatus ${grpcOk ? "ok" : "FAILED"}`);
  } finally {
    for (const socket of sockets) socket.destroy();
    await daemon.stop();
  }
}

function status(pid: number, field: "VmRSS" | "VmHWM"): number {
  const match = new RegExp(`${field}:\\s+(\\d+) kB`).exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(match![1]) / 1024;
}

/** Sends `size` bytes of Connect JSON body without a key until the daemon answers or closes; its status line and the bytes sent. */
function bodyWithoutKey(address: string, size: number): Promise<{ answer: string; sentMb: number; seconds: number }> {
  const start = performance.now();
  return new Promise((resolve) => {
    const socket = net.connect(split(address));
    let head = "";
    let sent = 0;
    let done = false;
    const finish = (why?: string) => {
      if (done) return;
      done = true;
      socket.destroy();
      resolve({ answer: head.split("\r\n")[0] || why || "closed without an answer", sentMb: sent / 1048576, seconds: (performance.now() - start) / 1000 });
    };
    socket.on("data", (chunk: Buffer) => {
      head += chunk.toString("latin1");
      if (head.includes("\r\n\r\n")) finish();
    });
    socket.on("error", (err) => finish(`error ${(err as NodeJS.ErrnoException).code}`));
    socket.on("close", () => finish());
    socket.once("connect", () => {
      socket.write(`POST /hypervisord.v1.HypervisordService/SubmitJob HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: ${size}\r\n\r\n`);
      // A JSON string: what the daemon reads of it is a body it would have to parse.
      const chunk = Buffer.alloc(1024 * 1024, 0x20);
      const pump = () => {
        while (!done && sent < size) {
          sent += chunk.length;
          if (!socket.write(chunk)) return void socket.once("drain", pump);
        }
      };
      pump();
    });
  });
}

async function bodies(): Promise<void> {
  const daemon = await startDaemon(DAEMON_NOFILE);
  try {
    await probeHttp(daemon.http);
    const before = status(daemon.pid, "VmRSS");
    console.log(`(b) ${BODIES} Connect JSON bodies of ${BODY_MB} MiB to SubmitJob without an API key`);
    for (let i = 0; i < BODIES; i++) {
      const outcome = await bodyWithoutKey(daemon.http, BODY_MB * 1048576);
      console.log(`    body ${i + 1}: "${outcome.answer}" after ${outcome.sentMb.toFixed(0)} MiB sent, ${outcome.seconds.toFixed(2)} s`);
    }
    await sleep(1000);
    console.log(`    daemon RSS: ${before.toFixed(0)} MiB before, ${status(daemon.pid, "VmRSS").toFixed(0)} MiB after, peak ${status(daemon.pid, "VmHWM").toFixed(0)} MiB`);
  } finally {
    await daemon.stop();
  }
}

console.log(`edge bench against ${ROOT} (${os.cpus().length} cores, Node ${process.version})`);
if (process.env.BENCH_SKIP_IDLE !== "1") await idleConnections();
if (process.env.BENCH_SKIP_BODIES !== "1") await bodies();
