import assert from "node:assert/strict";
import { createGrpcJsClient, type GrpcJsClient } from "./clients.ts";
import { spawnDaemon, type DaemonProcess } from "./daemon-process.ts";
import { startVcsim, type Vcsim } from "./vcsim.ts";

/** What a vSphere test file shares between its tests: one simulator, one daemon, one grpc-js client to it. */
export interface VsphereDaemon {
  sim: Vcsim;
  daemon: DaemonProcess;
  client: GrpcJsClient;
}

/** For before(): vcsim-export, then the daemon (fake-daemon.ts, its default options) and a client. */
export async function startVsphereDaemon(): Promise<VsphereDaemon> {
  const sim = await startVcsim();
  const daemon = await spawnDaemon();
  return { sim, daemon, client: createGrpcJsClient(daemon.grpcAddress) };
}

/** For after(): stops what was started (nothing, when the file was skipped); the daemon must exit 0. */
export async function stopVsphereDaemon({ sim, daemon, client }: Partial<VsphereDaemon>): Promise<void> {
  client?.close();
  if (daemon) assert.equal(await daemon.stop(), 0);
  await sim?.stop();
}
