// vSphere exports on a cluster of daemons sharing one PostgreSQL and one output root, against the project's vCenter
// simulator (startVcsim): the node running an export is killed (-9) mid-download, another node takes the job over
// after the lease and finishes it from the checkpoint, to the same bytes, leaving no snapshot on the simulator.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { pino } from "pino";
import { after, before, describe, test } from "node:test";
import { JobState, type Job } from "../gen/hypervisord/v1/job_pb.js";
import { openSession, type VSphereSession } from "../src/providers/vsphere/session.ts";
import { retrieveOne } from "../src/providers/vsphere/property-collector.ts";
import { children, textOf } from "../src/providers/vsphere/xml.ts";
import { createGrpcJsClient, type GrpcJsClient } from "./support/clients.ts";
import { spawnDaemon, type DaemonProcess } from "./support/daemon-process.ts";
import { postgresSkipReason, startPostgres, type Postgres } from "./support/postgres.ts";
import { tempDir } from "./support/temp-dir.ts";
import { buildVcsim, startVcsim, type Vcsim, type VcsimVm } from "./support/vcsim.ts";
import { isFinal, waitForJob } from "./support/wait-for-job.ts";

const pgSkip = postgresSkipReason();
if (pgSkip) process.stdout.write(`# skipping the vSphere cluster tests: ${pgSkip}\n`);

/** One key for every node: the job's stored vSphere password must open on whichever node takes the job over. */
const KEY = Buffer.alloc(32, 9).toString("base64");
const DISK = 3 * 1024 * 1024;
/** 3 MiB at 400 kB/s: about 8 s of download, time enough to kill the node a third of the way in. */
const SLOW = { VCSIM_EXPORT_RATE: "400000" };

interface Node {
  id: string;
  daemon: DaemonProcess;
  client: GrpcJsClient;
}

let pg: Postgres;
let vcsimSkip: string | undefined;
const cleanups: (() => Promise<unknown> | void)[] = [];

/** `n` daemons on a fresh database and one output root, started one after the other (the first migrates). */
async function startCluster(n: number): Promise<{ nodes: Node[]; outputRoot: string }> {
  const url = await pg.createDatabase();
  const outputRoot = tempDir("vsphere-cluster-root");
  const nodes: Node[] = [];
  for (const id of ["node-a", "node-b", "node-c"].slice(0, n)) {
    const daemon = await spawnDaemon({
      outputRoot,
      args: ["--store", url],
      env: { HYPERVISORD_NODE_ID: id, HYPERVISORD_ENCRYPTION_KEY: KEY, HYPERVISORD_LEASE_TIMEOUT: "3s" },
    });
    const client = createGrpcJsClient(daemon.grpcAddress);
    cleanups.push(() => daemon.kill(), () => client.close());
    nodes.push({ id, daemon, client });
  }
  return { nodes, outputRoot };
}

async function simulator(args: string[], env: Record<string, string>): Promise<Vcsim> {
  const sim = await startVcsim(args, env);
  cleanups.push(() => sim.stop());
  return sim;
}

const connection = (sim: Vcsim) => ({ url: sim.url, username: "user", password: "pass", insecure: true });

async function submit(node: Node, definition: Record<string, unknown>): Promise<string> {
  const { job } = await node.client.unary("submitJob", { definition: definition as never });
  return job!.id;
}

const downloaded = (atLeast: number) => (job: Job) =>
  job.state === JobState.RUNNING && job.progress?.phase === "downloading" && Number(job.progress.bytesDone) >= atLeast;

/**
 * Kills (-9) the node running `jobId` once a third of the disk is down; waits for the job to finish on a survivor,
 * and checks what a takeover after a lost lease must look like: another node, no new attempt, a recovery transition
 * that names the lease, and a download continued with Range from where the dead node stopped.
 */
async function killRunnerMidDownload(nodes: Node[], jobId: string, afterKill: () => void = () => undefined): Promise<{ victim: Node; survivor: Node }> {
  const running = await waitForJob(nodes[0]!.client, jobId, downloaded(DISK / 3), { what: "a third of the download", timeoutMs: 60_000 });
  const victim = nodes.find((n) => n.id === running.nodeId);
  assert.ok(victim, `the job runs on "${running.nodeId}", one of ${nodes.map((n) => n.id).join(", ")}`);
  const survivor = nodes.find((n) => n !== victim)!;
  const bytesAtKill = Number(running.progress!.bytesDone);
  await victim.daemon.kill();
  afterKill();
  const done = await waitForJob(survivor.client, jobId, isFinal, { what: "the job to end on another node", timeoutMs: 90_000 });
  assert.equal(done.state, JobState.COMPLETED, done.error?.message);
  assert.notEqual(done.nodeId, victim.id, "finished by another node");
  assert.equal(done.attempt, 1, "the takeover after a lost lease is not a new attempt");
  const { transitions } = await survivor.client.unary("getJobHistory", { jobId });
  assert.ok(transitions.some((t) => t.actor === "recovery" && /lease/.test(t.reason)),
    `a recovery transition names the lease: ${JSON.stringify(transitions.map((t) => [t.actor, t.reason]))}`);
  const { entries } = await survivor.client.unary("getJobLogs", { jobId });
  // The dead node's export lease is an object of its vSphere session: the taker opens the session cookie sealed in the
  // checkpoint (the shared encryption key), aborts the lease there and logs that session out.
  const messages = entries.map((e) => e.message);
  for (const cleanup of ["aborted the export lease an earlier run left", "logged out the vSphere session an earlier run left behind"]) {
    assert.equal(messages.filter((m) => m === cleanup).length, 1, `"${cleanup}" in the job's log:\n${messages.join("\n")}`);
  }
  const starts = entries.filter((e) => e.message === "download started").map((e) => JSON.parse(e.fieldsJson) as { file: string; fromByte: number })
    .filter((s) => s.file.endsWith("-disk-1.vmdk"));
  // The checkpoint may trail or (written between the poll and the kill) lead the progress read; neither byte 0 nor the end.
  assert.ok(starts.length === 2 && starts[1]!.fromByte > 0 && starts[1]!.fromByte < DISK,
    `the download continued where it stopped (${bytesAtKill} bytes at the kill): ${JSON.stringify(starts)}`);
  return { victim, survivor };
}

/** Every file of an export directory, by name. */
function filesOf(dir: string): Map<string, Buffer> {
  return new Map(fs.readdirSync(dir).sort().map((name) => [name, fs.readFileSync(path.join(dir, name))]));
}

/** A session of a user of its own, to look at the simulator without being one of the sessions counted. */
async function observe(sim: Vcsim): Promise<VSphereSession> {
  const session = await openSession({ url: sim.url, username: "observer", password: "x", insecure: true, thumbprint: "" },
    { maxConnections: 1, logger: pino({ level: "silent" }) }, AbortSignal.timeout(10_000));
  cleanups.push(() => session.close());
  return session;
}

/**
 * Stops the nodes still running (a graceful stop logs their vSphere sessions out), then checks that the simulator
 * holds no session but the observer's: the killed node's was logged out by the node that took its job over.
 */
async function assertNoSessionLeft(nodes: Node[], victim: Node, observer: VSphereSession): Promise<void> {
  for (const node of nodes.filter((n) => n !== victim)) assert.equal(await node.daemon.stop(), 0, `${node.id} stopped cleanly`);
  const found = await retrieveOne(observer, observer.content.sessionManager, ["sessionList"], AbortSignal.timeout(10_000));
  const users = found!.props.get("sessionList")!.children.map((s) => textOf(s, "userName"));
  assert.deepEqual(users, ["observer"], "no session left by the cluster's nodes");
}

/** The names of the VM's snapshots, the whole tree. */
async function snapshotNames(session: VSphereSession, vm: VcsimVm): Promise<string[]> {
  const found = await retrieveOne(session, { type: "VirtualMachine", value: vm.moref }, ["snapshot"], AbortSignal.timeout(10_000));
  const names: string[] = [];
  const walk = (trees: ReturnType<typeof children>) => {
    for (const tree of trees) {
      names.push(textOf(tree, "name"));
      walk(children(tree, "childSnapshotList"));
    }
  };
  walk(children(found?.props.get("snapshot"), "rootSnapshotList"));
  return names;
}

describe("vSphere exports on a cluster of daemons", { skip: pgSkip }, () => {
  before(async () => {
    vcsimSkip = (await buildVcsim()).reason;
    if (vcsimSkip) {
      console.log(`skipping the vSphere tests: ${vcsimSkip}`);
      return;
    }
    pg = await startPostgres();
  });
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
    await pg?.stop();
  });

  test("kill -9 of the node exporting a powered-off VM: another node finishes it after the lease, identical to an uninterrupted export", async (t) => {
    if (vcsimSkip) return t.skip(vcsimSkip);
    const sim = await simulator([], SLOW);
    const vm = sim.vms[0]!;
    const source = randomBytes(DISK);
    fs.writeFileSync(vm.disks[0]!.file, source);
    const { nodes, outputRoot } = await startCluster(3);
    const jobId = await submit(nodes[0]!, { provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "failover" });
    const { survivor, victim } = await killRunnerMidDownload(nodes, jobId);

    const dir = path.join(outputRoot, "failover", vm.name);
    assert.ok(fs.readFileSync(path.join(dir, `${vm.name}-disk-1.vmdk`)).equals(source), "the disk is the simulator's disk, byte for byte");
    const referenceId = await submit(survivor, { provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "reference" });
    const reference = await waitForJob(survivor.client, referenceId, isFinal, { timeoutMs: 60_000 });
    assert.equal(reference.state, JobState.COMPLETED, reference.error?.message);
    const [resumed, uninterrupted] = [filesOf(dir), filesOf(path.join(outputRoot, "reference", vm.name))];
    assert.deepEqual([...resumed.keys()], [...uninterrupted.keys()], "the same files as an uninterrupted export");
    for (const [name, bytes] of resumed) {
      if (name === "artifact-manifest.json") continue; // names its own directory, job and time: compared by content below
      assert.ok(bytes.equals(uninterrupted.get(name)!), `${name} is identical to the uninterrupted export's`);
    }
    const described = (manifest: Buffer) => {
      const { vm: machine, disks } = JSON.parse(manifest.toString()) as { vm: unknown; disks: { id: string; bytes: number; checksum: string; label?: string }[] };
      return { machine, disks: disks.map(({ id, bytes, checksum, label }) => ({ id, bytes, checksum, label })) };
    };
    assert.deepEqual(described(resumed.get("artifact-manifest.json")!), described(uninterrupted.get("artifact-manifest.json")!),
      "the artifact manifest describes the same VM and disks, with the same checksums");
    await assertNoSessionLeft(nodes, victim, await observe(sim));
  });

  test("kill -9 of the node exporting a running VM through a snapshot: another node continues from that snapshot and removes it", async (t) => {
    if (vcsimSkip) return t.skip(vcsimSkip);
    const sim = await simulator(["-autostart=true", "-disk-kb", String(DISK / 1024)], SLOW);
    const vm = sim.vms[0]!;
    const snapshotTime = randomBytes(DISK);
    fs.writeFileSync(vm.disks[0]!.file, snapshotTime);
    const session = await observe(sim);
    const { nodes, outputRoot } = await startCluster(2);
    const jobId = await submit(nodes[1]!, { provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "snapshot-failover" });
    await waitForJob(nodes[1]!.client, jobId, downloaded(1), { what: "the download from the snapshot", timeoutMs: 60_000 });
    assert.deepEqual(await snapshotNames(session, vm), [`hypervisord-${jobId}`], "the job's snapshot exists during the export");
    // The guest keeps writing while the node is dead: the export must stay the snapshot-time content.
    const { survivor, victim } = await killRunnerMidDownload(nodes, jobId, () => fs.writeFileSync(vm.disks[0]!.file, randomBytes(DISK)));

    const dir = path.join(outputRoot, "snapshot-failover", vm.name);
    assert.ok(fs.readFileSync(path.join(dir, `${vm.name}-disk-1.vmdk`)).equals(snapshotTime), "the snapshot-time bytes, resumed on another node");
    const { entries } = await survivor.client.unary("getJobLogs", { jobId });
    assert.equal(entries.filter((e) => e.message === "continuing from the snapshot an earlier run of this job made").length, 1,
      entries.map((e) => e.message).join("\n"));
    const cleaned = await waitForJob(survivor.client, jobId, (j) => j.pendingCleanup === "", { what: "no pending cleanup" });
    assert.equal(cleaned.state, JobState.COMPLETED);
    assert.deepEqual(await snapshotNames(session, vm), [], "no snapshot left on the VM");
    assert.deepEqual(fs.readdirSync(path.dirname(vm.disks[0]!.file)).filter((f) => f.includes("-snap-")), [], "no frozen snapshot files left");
    await assertNoSessionLeft(nodes, victim, session);
  });
});
