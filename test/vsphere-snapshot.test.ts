// Running VMs exported through a snapshot, against vcsim-export (../shared/vcsim), through the real daemon process:
// snapshot-time bytes while the live disk changes, and never a snapshot left behind (success, failure, cancel,
// lease timeout, session expiry, kill -9 at several points, removals that fail), quiescing, users' snapshots.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { JobState, type Job } from "../gen/hypervisord/v1/job_pb.js";
import { openSession, type VSphereSession } from "../src/providers/vsphere/session.ts";
import { retrieveOne } from "../src/providers/vsphere/property-collector.ts";
import { runTask } from "../src/providers/vsphere/tasks.ts";
import { children, moRefOf, textOf, type XmlNode } from "../src/providers/vsphere/xml.ts";
import { createGrpcJsClient, type GrpcJsClient } from "./support/clients.ts";
import { respawnDaemon, spawnDaemon, type DaemonProcess } from "./support/daemon-process.ts";
import { tempDir } from "./support/temp-dir.ts";
import { isFinal, waitForJob } from "./support/wait-for-job.ts";
import { buildVcsim, startVcsim, type Vcsim, type VcsimVm } from "./support/vcsim.ts";

const DISK = 2 * 1024 * 1024;
/** 2 MiB at 400 kB/s: about 5 s of download, time enough to write the live disk, cancel or kill meanwhile. */
const SLOW = { VCSIM_EXPORT_RATE: "400000" };

let skipReason: string | undefined;
let daemon: DaemonProcess;
let client: GrpcJsClient;
const sims: Vcsim[] = [];
const sessions: VSphereSession[] = [];

function configFile(yaml: string): string {
  const file = path.join(tempDir("snapshot-config"), "hypervisord.yaml");
  fs.writeFileSync(file, yaml);
  return file;
}

// Removal: 3 tries in a run, 100 ms then 200 ms apart; background retries 1 s, then 2 s; job retries 500 ms apart.
const CONFIG = configFile([
  "jobs:", "  retry_initial_backoff: 500ms", "  retry_max_backoff: 2s", "  cleanup_retry_initial: 1s", "  cleanup_retry_max: 2s",
  "vsphere:", "  snapshot_remove_attempts: 3", "  snapshot_remove_backoff: 100ms", "",
].join("\n"));

before(async () => {
  skipReason = (await buildVcsim()).reason;
  if (skipReason) {
    console.log(`skipping the vSphere snapshot tests: ${skipReason}`);
    return;
  }
  daemon = await spawnDaemon({ args: ["--config", CONFIG] });
  client = createGrpcJsClient(daemon.grpcAddress);
});

after(async () => {
  client?.close();
  for (const session of sessions) await session.close();
  if (daemon) assert.equal(await daemon.stop(), 0);
  for (const sim of sims) await sim.stop();
});

/** A simulator whose VMs run (autostart), each disk filled with random bytes. */
async function runningSimulator(env: Record<string, string> = {}, args: string[] = []): Promise<{ sim: Vcsim; vm: VcsimVm; bytes: Buffer; session: VSphereSession }> {
  const sim = await startVcsim(["-autostart=true", "-disk-kb", String(DISK / 1024), ...args], env);
  sims.push(sim);
  const vm = sim.vms[0]!;
  const bytes = randomBytes(DISK);
  fs.writeFileSync(vm.disks[0]!.file, bytes);
  const session = await openSession({ url: sim.url, username: "user", password: "pass", insecure: true, thumbprint: "" },
    { maxConnections: 2, logger: pino({ level: "silent" }) }, AbortSignal.timeout(10_000));
  sessions.push(session);
  return { sim, vm, bytes, session };
}

const connection = (sim: Vcsim) => ({ url: sim.url, username: "user", password: "pass", insecure: true });
const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

async function submit(definition: Record<string, unknown>, on: GrpcJsClient = client): Promise<string> {
  const { job } = await on.unary("submitJob", { definition: definition as never });
  return job!.id;
}

/** The VM's snapshot tree, flattened: name and moref of each. */
async function snapshotsOf(session: VSphereSession, vm: VcsimVm): Promise<{ name: string; moref: string }[]> {
  const found = await retrieveOne(session, { type: "VirtualMachine", value: vm.moref }, ["snapshot"], AbortSignal.timeout(10_000));
  const out: { name: string; moref: string }[] = [];
  const walk = (trees: XmlNode[]) => {
    for (const tree of trees) {
      out.push({ name: textOf(tree, "name"), moref: moRefOf(children(tree, "snapshot")[0])!.value });
      walk(children(tree, "childSnapshotList"));
    }
  };
  walk(children(found?.props.get("snapshot"), "rootSnapshotList"));
  return out;
}

/** Frozen disk files of snapshots in the VM's datastore directory (`<disk>-snap-<n>.vmdk`). */
function snapFiles(vm: VcsimVm): string[] {
  return fs.readdirSync(path.dirname(vm.disks[0]!.file)).filter((f) => f.includes("-snap-")).sort();
}

async function assertNoSnapshotLeft(session: VSphereSession, vm: VcsimVm): Promise<void> {
  assert.deepEqual(await snapshotsOf(session, vm), [], "the VM's snapshot property is empty");
  assert.deepEqual(snapFiles(vm), [], "no frozen snapshot files in the VM's datastore directory");
}

function exportedDisk(root: string, dir: string, vm: VcsimVm): Buffer {
  return fs.readFileSync(path.join(root, dir, vm.name, `${vm.name}-disk-1.vmdk`));
}

const downloading = (job: Job) => job.state === JobState.RUNNING && job.progress?.phase === "downloading" && Number(job.progress.bytesDone) > 0;

async function metric(name: string, base = daemon.httpUrl): Promise<number> {
  const body = await (await fetch(`${base}/metrics`)).text();
  return body.split("\n").filter((l) => l.startsWith(name)).reduce((n, l) => n + Number(l.split(" ").pop()), 0);
}

function logLines(d: DaemonProcess, jobId: string, msg: string): unknown[] {
  return d.logs.filter((l) => l.includes(jobId) && l.includes(`"msg":"${msg}`));
}

describe("running VMs exported through a snapshot", () => {
  test("the live disk overwritten during the export: the output is the snapshot-time bytes, application-consistent, no snapshot left", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const { sim, vm, bytes, session } = await runningSimulator(SLOW);
    assert.equal(vm.powerState, "poweredOn");
    const createdBefore = await metric("hypersdk_snapshots_created_total{consistency=\"application_consistent\"}");
    const removedBefore = await metric("hypersdk_snapshots_removed_total");
    const id = await submit({ provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "live" });
    await waitForJob(client, id, downloading, { what: "the download" });
    const during = await snapshotsOf(session, vm);
    assert.deepEqual(during.map((s) => s.name), [`hypervisord-${id}`], "the job's snapshot, named after it, exists during the export");
    // The guest keeps writing: the live disk changes completely after the snapshot.
    fs.writeFileSync(vm.disks[0]!.file, randomBytes(DISK));
    const job = await waitForJob(client, id, isFinal, { timeoutMs: 60_000 });
    assert.equal(job.state, JobState.COMPLETED, job.error?.message);
    assert.equal(sha256(exportedDisk(daemon.outputRoot, "live", vm)), sha256(bytes), "the exported disk is the snapshot-time content");
    assert.equal(job.result!.consistency, "application_consistent");
    assert.equal(job.result!.applicationConsistent, true);
    assert.deepEqual(job.result!.warnings, []);
    assert.equal(job.pendingCleanup, "");
    await assertNoSnapshotLeft(session, vm);
    assert.equal(await metric("hypersdk_snapshots_created_total{consistency=\"application_consistent\"}"), createdBefore + 1);
    assert.equal(await metric("hypersdk_snapshots_removed_total"), removedBefore + 1);
    // The descriptor was made for the snapshot (cdp.snapshot) and describes the VM's disk.
    assert.match(fs.readFileSync(path.join(daemon.outputRoot, "live", vm.name, `${vm.name}.ovf`), "utf8"), new RegExp(`ovf:href="${vm.name}-disk-1.vmdk"`));
  });

  test("a powered-off VM is exported directly: no snapshot, consistency powered_off", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const { sim, vm, bytes, session } = await runningSimulator();
    await runTask(session, "PowerOffVM_Task", { type: "VirtualMachine", value: vm.moref }, AbortSignal.timeout(10_000));
    const createdBefore = await metric("hypersdk_snapshots_created_total");
    const job = await waitForJob(client, await submit({ provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "off" }), isFinal, { timeoutMs: 60_000 });
    assert.equal(job.state, JobState.COMPLETED, job.error?.message);
    assert.equal(job.result!.consistency, "powered_off");
    assert.ok(exportedDisk(daemon.outputRoot, "off", vm).equals(bytes));
    assert.equal(await metric("hypersdk_snapshots_created_total"), createdBefore, "no snapshot taken");
  });

  test("running_vm_policy fail refuses a running VM with FAILED_PRECONDITION naming the policy; nothing is made", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const { sim, vm, session } = await runningSimulator();
    const job = await waitForJob(client, await submit({ provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "refused", runningVmPolicy: "fail" }), isFinal);
    assert.equal(job.state, JobState.FAILED);
    assert.equal(job.error!.code, "FAILED_PRECONDITION");
    assert.match(job.error!.message, /is powered on and running_vm_policy is "fail"/);
    await assertNoSnapshotLeft(session, vm);
  });

  test("a VM with two user snapshots keeps both, names and morefs, and their files", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const { sim, vm, bytes, session } = await runningSimulator();
    const ref = { type: "VirtualMachine", value: vm.moref };
    for (const name of ["before-upgrade", "after-upgrade"]) {
      await runTask(session, "CreateSnapshot_Task", ref, AbortSignal.timeout(10_000), [["name", name], ["memory", false], ["quiesce", false]]);
    }
    const userTree = await snapshotsOf(session, vm);
    const userFiles = snapFiles(vm);
    assert.equal(userTree.length, 2);
    const job = await waitForJob(client, await submit({ provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "users" }), isFinal, { timeoutMs: 60_000 });
    assert.equal(job.state, JobState.COMPLETED, job.error?.message);
    assert.ok(exportedDisk(daemon.outputRoot, "users", vm).equals(bytes));
    assert.deepEqual(await snapshotsOf(session, vm), userTree, "the user's snapshots, same names and morefs");
    assert.deepEqual(snapFiles(vm), userFiles, "their frozen files are untouched");
  });
});

describe("no snapshot left after a failure, a cancel, a lease timeout, a session expiry", () => {
  test("a failure after the snapshot (output path taken by a file): FAILED, snapshot removed", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const { sim, vm, session } = await runningSimulator();
    fs.writeFileSync(path.join(daemon.outputRoot, "blocked"), "a file where the output directory should go");
    const job = await waitForJob(client, await submit({ provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "blocked" }), isFinal, { timeoutMs: 60_000 });
    assert.equal(job.state, JobState.FAILED);
    await assertNoSnapshotLeft(session, vm);
  });

  test("cancel during the download: CANCELLED, snapshot removed, no files", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const { sim, vm, session } = await runningSimulator(SLOW);
    const id = await submit({ provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "cancelled" });
    await waitForJob(client, id, downloading, { what: "the download" });
    await client.unary("cancelJob", { jobId: id, reason: "test" });
    await waitForJob(client, id, () => logLines(daemon, id, "snapshot removed").length > 0, { what: "the removal", timeoutMs: 20_000 }).catch(() => undefined);
    const job = await waitForJob(client, id, isFinal);
    assert.equal(job.state, JobState.CANCELLED);
    for (let i = 0; i < 100 && (await snapshotsOf(session, vm)).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
    await assertNoSnapshotLeft(session, vm);
  });

  test("cancel during CreateSnapshot_Task: the snapshot being made is waited for, then removed", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const { sim, vm, session } = await runningSimulator({ VCSIM_SNAPSHOT_CREATE_MS: "1500" });
    const id = await submit({ provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "cancelled-create" });
    await waitForJob(client, id, (j) => j.progress?.phase === "snapshot", { what: "CreateSnapshot_Task" });
    await client.unary("cancelJob", { jobId: id, reason: "test" });
    assert.equal((await waitForJob(client, id, isFinal)).state, JobState.CANCELLED);
    // The task ends on the host 1.5 s after it started; the removal follows it.
    for (let i = 0; i < 50 && logLines(daemon, id, "snapshot removed").length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(logLines(daemon, id, "snapshot removed").length, 1, "the snapshot made after the cancel was removed");
    await assertNoSnapshotLeft(session, vm);
  });

  test("a lease that times out (the daemon frozen past it): the run's snapshot is removed, the retry takes a new one and completes", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const { sim, vm, session } = await runningSimulator({ ...SLOW, VCSIM_LEASE_TIMEOUT_S: "2" });
    const id = await submit({ provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "lease-timeout" });
    const first = await waitForJob(client, id, downloading, { what: "the download" });
    const firstSnapshot = (await snapshotsOf(session, vm))[0]!;
    // The keep-alive cannot run while the process is stopped: the lease times out on the host, its URLs answer 404.
    daemon.child.kill("SIGSTOP");
    await new Promise((r) => setTimeout(r, 3500));
    const retried = randomBytes(DISK);
    fs.writeFileSync(vm.disks[0]!.file, retried);
    daemon.child.kill("SIGCONT");
    const job = await waitForJob(client, id, isFinal, { timeoutMs: 60_000 });
    assert.equal(job.state, JobState.COMPLETED, job.error?.message);
    assert.ok(job.attempt > first.attempt, `retried (attempt ${job.attempt})`);
    assert.ok(exportedDisk(daemon.outputRoot, "lease-timeout", vm).equals(retried), "the retry exported the new snapshot's bytes, whole");
    assert.ok(logLines(daemon, id, "snapshot removed").length >= 2, "each run removed its snapshot");
    assert.ok(!(await snapshotsOf(session, vm)).some((s) => s.moref === firstSnapshot.moref));
    await assertNoSnapshotLeft(session, vm);
  });

  test("the session expires during the export: the snapshot is removed after a re-login", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const { sim, vm, bytes, session } = await runningSimulator(SLOW, ["-session-idle-timeout", "2s"]);
    const id = await submit({ provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "expired" });
    const job = await waitForJob(client, id, isFinal, { timeoutMs: 60_000 });
    assert.equal(job.state, JobState.COMPLETED, job.error?.message);
    assert.ok(exportedDisk(daemon.outputRoot, "expired", vm).equals(bytes));
    assert.ok(daemon.logs.some((l) => l.includes(sim.url.replace(/\/sdk$/, "").replace("https://", "")) && l.includes("vSphere session logged in again")), "the session did expire");
    await session.ensureAlive(AbortSignal.timeout(5000));
    await assertNoSnapshotLeft(session, vm);
  });
});

describe("quiescing", () => {
  test("quiesce fails (FilesystemQuiesceFault), policy fallback: crash-consistent snapshot, warning, COMPLETED", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const { sim, vm, bytes, session } = await runningSimulator({ VCSIM_SNAPSHOT_QUIESCE_FAIL: "1" });
    const crashBefore = await metric("hypersdk_snapshots_created_total{consistency=\"crash_consistent\"}");
    const job = await waitForJob(client, await submit({ provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "fallback" }), isFinal, { timeoutMs: 60_000 });
    assert.equal(job.state, JobState.COMPLETED, job.error?.message);
    assert.equal(job.result!.consistency, "crash_consistent");
    assert.equal(job.result!.applicationConsistent, false);
    assert.equal(job.result!.warnings.length, 1, job.result!.warnings.join("\n"));
    assert.match(job.result!.warnings[0]!, /could not be quiesced \(FilesystemQuiesceFault\).*crash-consistent/);
    assert.ok(exportedDisk(daemon.outputRoot, "fallback", vm).equals(bytes));
    assert.equal(await metric("hypersdk_snapshots_created_total{consistency=\"crash_consistent\"}"), crashBefore + 1);
    await assertNoSnapshotLeft(session, vm);
  });

  test("quiesce fails (ApplicationQuiesceFault), policy fail: FAILED_PRECONDITION naming quiesce_policy, not retried, nothing left", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const { sim, vm, session } = await runningSimulator({ VCSIM_SNAPSHOT_QUIESCE_FAIL: "app" });
    const job = await waitForJob(client, await submit({ provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "quiesce-fail", quiescePolicy: "fail" }), isFinal, { timeoutMs: 60_000 });
    assert.equal(job.state, JobState.FAILED);
    assert.equal(job.error!.code, "FAILED_PRECONDITION");
    assert.equal(job.error!.retryable, false);
    assert.equal(job.attempt, 1);
    assert.match(job.error!.message, /ApplicationQuiesceFault.*quiesce_policy is "fail"/);
    await assertNoSnapshotLeft(session, vm);
  });

  test("quiesce false: crash-consistent without a warning (the job asked for it)", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const { sim, vm, session } = await runningSimulator();
    const job = await waitForJob(client, await submit({ provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "no-quiesce", quiesce: false }), isFinal, { timeoutMs: 60_000 });
    assert.equal(job.state, JobState.COMPLETED, job.error?.message);
    assert.equal(job.result!.consistency, "crash_consistent");
    assert.deepEqual(job.result!.warnings, []);
    await assertNoSnapshotLeft(session, vm);
  });

  test("bad policies: INVALID_ARGUMENT naming the field", async (t) => {
    if (skipReason) return t.skip(skipReason);
    for (const [field, value] of [["runningVmPolicy", "hibernate"], ["quiescePolicy", "maybe"]] as const) {
      const err = await client.unary("submitJob", { definition: { provider: "vsphere", vm: "x", vsphere: { url: "https://vc.example/sdk" }, outputDir: "bad", [field]: value } as never })
        .then(() => undefined, (e: unknown) => e as { code: number; details: string });
      assert.equal(err?.code, 3, `${field}: INVALID_ARGUMENT`);
      assert.match(err!.details, new RegExp(`definition\\.${field === "runningVmPolicy" ? "running_vm_policy" : "quiesce_policy"}`));
    }
  });
});

describe("removals that fail", () => {
  test("RemoveSnapshot_Task fails twice (FileLocked), then works: removed within the run, no warning", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const { sim, vm, session } = await runningSimulator({ VCSIM_SNAPSHOT_REMOVE_FAIL: "2" });
    const failuresBefore = await metric("hypersdk_snapshot_removal_failures_total");
    const job = await waitForJob(client, await submit({ provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "remove-twice" }), isFinal, { timeoutMs: 60_000 });
    assert.equal(job.state, JobState.COMPLETED, job.error?.message);
    assert.deepEqual(job.result!.warnings, []);
    assert.equal(job.pendingCleanup, "");
    assert.equal(await metric("hypersdk_snapshot_removal_failures_total"), failuresBefore + 2);
    await assertNoSnapshotLeft(session, vm);
  });

  test("beyond the run's tries: COMPLETED with a warning and pending_cleanup, then removed by the background retry", async (t) => {
    if (skipReason) return t.skip(skipReason);
    // 3 tries in the run, then the background retries (1 s, then 2 s): the 5th try works.
    const { sim, vm, bytes, session } = await runningSimulator({ VCSIM_SNAPSHOT_REMOVE_FAIL: "4" });
    const id = await submit({ provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "remove-later" });
    const job = await waitForJob(client, id, isFinal, { timeoutMs: 60_000 });
    assert.equal(job.state, JobState.COMPLETED, job.error?.message);
    assert.ok(exportedDisk(daemon.outputRoot, "remove-later", vm).equals(bytes), "a completed export stays completed");
    assert.equal(job.result!.warnings.length, 1);
    assert.match(job.result!.warnings[0]!, new RegExp(`snapshot hypervisord-${id} \\(snapshot-\\d+\\) on VM ${vm.name}: RemoveSnapshot_Task failed: FileLocked; retrying`));
    assert.match(job.pendingCleanup, new RegExp(`^snapshot hypervisord-${id} \\(snapshot-\\d+\\) on VM ${vm.name}: RemoveSnapshot_Task failed: FileLocked; retrying$`));
    assert.equal((await snapshotsOf(session, vm)).length, 1, "still there while pending");
    assert.ok(await metric("hypersdk_snapshots_pending_removal") >= 1);
    const cleared = await waitForJob(client, id, (j) => j.pendingCleanup === "", { what: "the background removal", timeoutMs: 15_000 });
    assert.equal(cleared.state, JobState.COMPLETED);
    await assertNoSnapshotLeft(session, vm);
    assert.ok(fs.existsSync(path.join(daemon.outputRoot, "remove-later", vm.name, `${vm.name}.ovf`)), "the export's files stay");
  });
  test("a failed job whose removal keeps failing shows pending_cleanup until the background retry removes it", async (t) => {
    if (skipReason) return t.skip(skipReason);
    // The run's 3 tries and the try at the job's end fail; the background retry after 1 s works.
    const { sim, vm, session } = await runningSimulator({ VCSIM_SNAPSHOT_REMOVE_FAIL: "4" });
    fs.writeFileSync(path.join(daemon.outputRoot, "blocked-pending"), "a file where the output directory should go");
    const id = await submit({ provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "blocked-pending" });
    const failed = await waitForJob(client, id, isFinal, { timeoutMs: 60_000 });
    assert.equal(failed.state, JobState.FAILED);
    // Polled: the failed job shows what it holds, then nothing once the background retry has removed it.
    const seen: string[] = [];
    for (let i = 0; i < 200; i++) {
      const pending = (await client.unary("getJob", { jobId: id })).job!.pendingCleanup;
      if (pending) seen.push(pending);
      else if (seen.length > 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(seen.length > 0, "pending_cleanup was shown");
    assert.match(seen[0]!, new RegExp(`^snapshot hypervisord-${id} \\(snapshot-\\d+\\) on VM ${vm.name}: RemoveSnapshot_Task failed: FileLocked; retrying$`));
    assert.equal((await client.unary("getJob", { jobId: id })).job!.pendingCleanup, "", "cleared once removed");
    await assertNoSnapshotLeft(session, vm);
  });
});

describe("kill -9 and a graceful stop of the daemon", () => {
  // No background cleanup retry within these tests: what is removed after a restart is removed by the start.
  const NO_BACKGROUND = configFile(["jobs:", "  cleanup_retry_initial: 10m", "vsphere:", "  snapshot_remove_attempts: 3", "  snapshot_remove_backoff: 100ms", ""].join("\n"));

  /** A daemon of the test's own, or `restartOf` (killed if still running) started again on its data. */
  async function ownDaemon(restartOf?: DaemonProcess) {
    const d = restartOf ? await respawnDaemon(restartOf) : await spawnDaemon({ args: ["--config", NO_BACKGROUND] });
    const c = createGrpcJsClient(d.grpcAddress);
    return { d, c };
  }

  test("killed at three points: before the download (in CreateSnapshot_Task), during it, after it (removal pending); the restart leaves no snapshot", async (t) => {
    if (skipReason) return t.skip(skipReason);
    // One daemon, three jobs on three simulators, one kill -9, one restart.
    const during = await runningSimulator(SLOW);
    const creating = await runningSimulator({ VCSIM_SNAPSHOT_CREATE_MS: "2000" });
    // 3 tries in the run fail; the 4th, at the restart, works.
    const pending = await runningSimulator({ VCSIM_SNAPSHOT_REMOVE_FAIL: "3" });
    const first = await ownDaemon();
    const pendingId = await submit({ provider: "vsphere", vm: pending.vm.path, vsphere: connection(pending.sim), outputDir: "killed-after" }, first.c);
    const done = await waitForJob(first.c, pendingId, isFinal, { timeoutMs: 60_000 });
    assert.equal(done.state, JobState.COMPLETED, done.error?.message);
    assert.notEqual(done.pendingCleanup, "");
    const duringId = await submit({ provider: "vsphere", vm: during.vm.path, vsphere: connection(during.sim), outputDir: "killed" }, first.c);
    await waitForJob(first.c, duringId, downloading, { what: "the download" });
    const creatingId = await submit({ provider: "vsphere", vm: creating.vm.path, vsphere: connection(creating.sim), outputDir: "killed-create" }, first.c);
    await waitForJob(first.c, creatingId, (j) => j.progress?.phase === "snapshot", { what: "CreateSnapshot_Task" });
    await new Promise((r) => setTimeout(r, 300));
    await waitForJob(first.c, duringId, (j) => downloading(j) && Number(j.progress!.bytesDone) >= 600_000, { what: "a third of the download" });
    const snapshot = (await snapshotsOf(during.session, during.vm))[0]!;
    first.c.close();
    await first.d.kill();
    // The guest keeps writing; vcsim finishes the CreateSnapshot_Task the daemon no longer waits for: a snapshot
    // with the job's name, and only the record written before the call in the job's checkpoint.
    fs.writeFileSync(during.vm.disks[0]!.file, randomBytes(DISK));
    for (let i = 0; i < 50 && (await snapshotsOf(creating.session, creating.vm)).length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual((await snapshotsOf(creating.session, creating.vm)).map((s) => s.name), [`hypervisord-${creatingId}`]);
    assert.equal((await snapshotsOf(pending.session, pending.vm)).length, 1, "the completed job's snapshot is still there");

    const second = await ownDaemon(first.d);
    try {
      const resumed = await waitForJob(second.c, duringId, isFinal, { timeoutMs: 60_000 });
      assert.equal(resumed.state, JobState.COMPLETED, resumed.error?.message);
      assert.ok(exportedDisk(second.d.outputRoot, "killed", during.vm).equals(during.bytes), "the snapshot-time bytes, resumed");
      assert.equal(logLines(second.d, duringId, "continuing from the snapshot an earlier run of this job made").length, 1);
      assert.ok(second.d.logs.some((l) => l.includes(duringId) && l.includes(snapshot.moref) && l.includes("snapshot removed")), "the same snapshot, removed at the end");
      await assertNoSnapshotLeft(during.session, during.vm);

      const created = await waitForJob(second.c, creatingId, isFinal, { timeoutMs: 60_000 });
      assert.equal(created.state, JobState.COMPLETED, created.error?.message);
      assert.ok(exportedDisk(second.d.outputRoot, "killed-create", creating.vm).equals(creating.bytes));
      await assertNoSnapshotLeft(creating.session, creating.vm);

      const cleared = await waitForJob(second.c, pendingId, (j) => j.pendingCleanup === "", { what: "the removal at the start" });
      assert.equal(cleared.state, JobState.COMPLETED);
      await assertNoSnapshotLeft(pending.session, pending.vm);
      assert.ok(fs.existsSync(path.join(second.d.outputRoot, "killed-after", pending.vm.name, `${pending.vm.name}-disk-1.vmdk`)), "the completed export's files are kept");
    } finally {
      second.c.close();
      assert.equal(await second.d.stop(), 0);
    }
  });

  test("a graceful stop (SIGTERM) mid-download removes the snapshot; the resumed job takes a new one and completes", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const { sim, vm, session } = await runningSimulator(SLOW);
    const first = await ownDaemon();
    const id = await submit({ provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "stopped" }, first.c);
    await waitForJob(first.c, id, downloading, { what: "the download" });
    first.c.close();
    assert.equal(await first.d.stop(), 0);
    await assertNoSnapshotLeft(session, vm);
    const now = randomBytes(DISK);
    fs.writeFileSync(vm.disks[0]!.file, now);
    const second = await ownDaemon(first.d);
    try {
      const job = await waitForJob(second.c, id, isFinal, { timeoutMs: 60_000 });
      assert.equal(job.state, JobState.COMPLETED, job.error?.message);
      assert.ok(exportedDisk(second.d.outputRoot, "stopped", vm).equals(now), "the new snapshot's bytes, whole (nothing of the old one resumed)");
      await assertNoSnapshotLeft(session, vm);
    } finally {
      second.c.close();
      assert.equal(await second.d.stop(), 0);
    }
  });
});
