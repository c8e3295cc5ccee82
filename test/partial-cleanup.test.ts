// What a failed or cancelled export leaves behind: nothing it wrote (unless keep_partial), and never anything it
// did not write. Files are written under .partial names until complete and verified. Through the real daemon
// (fake providers and the vsphere provider against vcsim-export) and the engine on a real store.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { ExportFormat, JobState, type Job } from "../gen/hypervisord/v1/job_pb.js";
import type { GrpcJsClient } from "./support/clients.ts";
import { hasBytes, isFinal, waitForJob } from "./support/wait-for-job.ts";
import { respawnOptions, spawnDaemonWithClient, type DaemonProcess, type SpawnOptions } from "./support/daemon-process.ts";
import { tempDir } from "./support/temp-dir.ts";
import { fakeDefinition, startEngine } from "./support/engine-harness.ts";
import { initialSeq } from "../src/engine/update-bus.ts";
import { waitFor } from "./support/wait-for.ts";
import { fakeDiskBytes } from "./support/fake-provider.ts";
import { buildVcsim, startVcsim, type Vcsim } from "./support/vcsim.ts";

const REMOVED = "removed what the job wrote";
const cleanups: (() => Promise<unknown> | void)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

const start = (options: SpawnOptions = {}) => spawnDaemonWithClient(options, cleanups);


/** Waits for the job log entry starting with `prefix` (the cleanup runs just after the final transition). */
async function logEntry(client: GrpcJsClient, jobId: string, prefix: string, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { entries } = await client.unary("getJobLogs", { jobId });
    const found = entries.find((e) => e.message.startsWith(prefix));
    if (found) return { message: found.message, fields: JSON.parse(found.fieldsJson) as Record<string, unknown> };
    if (Date.now() > deadline) throw new Error(`no "${prefix}" in the job log:\n${entries.map((e) => e.message).join("\n")}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** What a job's unfinished files end with: its own tag, so that two jobs never share one. */
const partial = (jobId: string) => `.${jobId.replace(/-/g, "").slice(-8)}.partial`;

/** Every path under `dir`, relative, sorted; [] when it does not exist. */
function tree(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return (fs.readdirSync(dir, { recursive: true }) as string[]).sort();
}

describe("fake provider through the daemon", () => {
  let daemon: DaemonProcess;
  let client: GrpcJsClient;
  before(async () => {
    ({ daemon, client } = await start());
  });

  test("cancel mid-write: only .partial names meanwhile; afterwards nothing the job wrote, and an unrelated file stays", async () => {
    const out = path.join(daemon.outputRoot, "shared");
    fs.mkdirSync(out);
    fs.writeFileSync(path.join(out, "notes.txt"), "not the job's");
    const { job } = await client.unary("submitJob", { definition: { provider: "fake", vm: "c1?size=4194304&chunk=65536&delayMs=10", outputDir: "shared" } });
    await waitForJob(client, job!.id, hasBytes(65536));
    assert.deepEqual(tree(out), ["c1", `c1/c1-disk-1.img${partial(job!.id)}`, "notes.txt"], "a disk being written has its .partial name only");
    await client.unary("cancelJob", { jobId: job!.id, reason: "test" });
    const removed = await logEntry(client, job!.id, REMOVED);
    assert.deepEqual(tree(out), ["notes.txt"], "the job's file and the directory it created are gone; the rest stays");
    assert.deepEqual(removed.fields.files, [path.join(out, "c1", `c1-disk-1.img${partial(job!.id)}`)]);
    assert.deepEqual(removed.fields.directories, [path.join(out, "c1")]);
    const { job: ended } = await client.unary("getJob", { jobId: job!.id });
    assert.equal(ended!.state, JobState.CANCELLED);
    assert.doesNotMatch(ended!.error!.message, /keep_partial/);
  });

  test("an earlier export under the same names stays whole while a new one is written, and after it is cancelled", async () => {
    const dir = path.join(daemon.outputRoot, "again", "e1");
    fs.mkdirSync(dir, { recursive: true });
    const earlier = path.join(dir, "e1-disk-1.img");
    fs.writeFileSync(earlier, "the export of last night");
    const { job } = await client.unary("submitJob", { definition: { provider: "fake", vm: "e1?size=4194304&chunk=65536&delayMs=10", outputDir: "again" } });
    await waitForJob(client, job!.id, hasBytes(65536));
    assert.equal(fs.readFileSync(earlier, "utf8"), "the export of last night", "the final name is only replaced by a complete file");
    await client.unary("cancelJob", { jobId: job!.id, reason: "" });
    const removed = await logEntry(client, job!.id, REMOVED);
    assert.deepEqual(removed.fields.files, [`${earlier}${partial(job!.id)}`]);
    assert.deepEqual(tree(path.join(daemon.outputRoot, "again")), ["e1", "e1/e1-disk-1.img"]);
    assert.equal(fs.readFileSync(earlier, "utf8"), "the export of last night");
  });

  test("jobs writing the same names at once each use their own partial file, and all complete", async () => {
    const size = 256 * 1024;
    const { results } = await client.unary("submitJobs", {
      definitions: Array.from({ length: 6 }, () => ({ provider: "fake", vm: `same?size=${size}&chunk=65536&delayMs=5`, outputDir: "same" })),
    });
    for (const result of results) {
      const done = await waitForJob(client, result.job!.id, isFinal);
      assert.equal(done.state, JobState.COMPLETED, done.error?.message);
    }
    assert.deepEqual(tree(path.join(daemon.outputRoot, "same")), ["same", "same/same-disk-1.img"]);
    assert.ok(fs.readFileSync(path.join(daemon.outputRoot, "same", "same", "same-disk-1.img")).equals(fakeDiskBytes(0, size)));
  });

  test("a failure for good removes what the job wrote, the output directory it created included", async () => {
    const { job } = await client.unary("submitJob", {
      definition: { provider: "fake", vm: "f1?size=1048576&chunk=65536&delayMs=2&failTimes=1&failAfter=262144&failCode=INTERNAL", outputDir: "made-by-f1/deeper" },
    });
    const ended = await waitForJob(client, job!.id, isFinal);
    assert.equal(ended.state, JobState.FAILED);
    assert.equal(ended.attempt, 1, "not retryable: failed at once");
    const removed = await logEntry(client, job!.id, REMOVED);
    assert.match(removed.message, /: 1 files \(.+ released\), 3 directories$/);
    assert.equal(fs.existsSync(path.join(daemon.outputRoot, "made-by-f1")), false, "directories the job created are removed when empty");
  });

  test("a retry keeps the .partial and resumes from it; the finished file has its final name only", async () => {
    const size = 1024 * 1024;
    const { job } = await client.unary("submitJob", {
      definition: { provider: "fake", vm: `r1?size=${size}&chunk=65536&delayMs=0&failTimes=1&failAfter=524288`, outputDir: "retry" },
    });
    const done = await waitForJob(client, job!.id, isFinal);
    assert.equal(done.state, JobState.COMPLETED, done.error?.message);
    assert.equal(done.attempt, 2);
    const resumed = await logEntry(client, job!.id, "resuming from checkpoint");
    assert.ok((resumed.fields.offset as number) >= 524288, "the retry continued from the bytes of the first attempt");
    const dir = path.join(daemon.outputRoot, "retry");
    assert.deepEqual(tree(dir), ["r1", "r1/r1-disk-1.img"]);
    assert.ok(fs.readFileSync(path.join(dir, "r1", "r1-disk-1.img")).equals(fakeDiskBytes(0, size)));
  });

  test("a retry after the file was finished takes it back as .partial and does not write it again", async () => {
    const size = 512 * 1024;
    const { job } = await client.unary("submitJob", {
      definition: { provider: "fake", vm: `r2?size=${size}&chunk=65536&delayMs=0&failTimes=1&failAfter=${size}`, outputDir: "retry-finished" },
    });
    const done = await waitForJob(client, job!.id, isFinal);
    assert.equal(done.state, JobState.COMPLETED, done.error?.message);
    assert.equal(done.attempt, 2);
    const resumed = await logEntry(client, job!.id, "resuming from checkpoint");
    assert.equal(resumed.fields.offset, size, "every byte was kept");
    const dir = path.join(daemon.outputRoot, "retry-finished");
    assert.deepEqual(tree(dir), ["r2", "r2/r2-disk-1.img"]);
    assert.ok(fs.readFileSync(path.join(dir, "r2", "r2-disk-1.img")).equals(fakeDiskBytes(0, size)));
  });

  test("keep_partial: a cancelled job keeps its .partial, and its error says so", async () => {
    const { job } = await client.unary("submitJob", {
      definition: { provider: "fake", vm: "k1?size=4194304&chunk=65536&delayMs=10", outputDir: "kept", keepPartial: true },
    });
    await waitForJob(client, job!.id, hasBytes(65536));
    const { job: cancelled } = await client.unary("cancelJob", { jobId: job!.id, reason: "look at it" });
    const kept = path.join(daemon.outputRoot, "kept", "k1", `k1-disk-1.img${partial(job!.id)}`);
    assert.equal(cancelled!.error!.message, `look at it (keep_partial: the 1 file it wrote is kept, e.g. ${kept})`);
    assert.equal(cancelled!.definition!.keepPartial, true);
    await logEntry(client, job!.id, "keep_partial: kept");
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(fs.statSync(kept).size > 0, "the partial file stays");
  });

  test("hyperctl export --keep-partial sets keep_partial", async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, HYPERVISORD_ADDR: daemon.httpUrl };
    delete env.HYPERVISORD_API_KEY;
    const hyperctl = path.resolve(import.meta.dirname, "../bin/hyperctl.js");
    const run = execFileSync(process.execPath, [hyperctl, "export", "--provider", "fake", "--vm", "noop", "--keep-partial", "-o", "json"], { encoding: "utf8", env, timeout: 60_000 });
    const submitted = JSON.parse(run) as { job: { definition: { keepPartial?: boolean } } };
    assert.equal(submitted.job.definition.keepPartial, true);
  });

  test("cancelled while waiting for its retry: removed at once", async () => {
    const { job } = await client.unary("submitJob", {
      // The second attempt waits for the retry backoff (2 s by default, +-20%): cancelled meanwhile.
      definition: { provider: "fake", vm: "q1?size=1048576&chunk=65536&delayMs=0&failTimes=5&failAfter=131072", outputDir: "queued" },
    });
    await waitForJob(client, job!.id, (j) => j.state === JobState.QUEUED && j.attempt === 1 && !!j.error);
    assert.deepEqual(tree(path.join(daemon.outputRoot, "queued")), ["q1", `q1/q1-disk-1.img${partial(job!.id)}`], "kept for the retry");
    await client.unary("cancelJob", { jobId: job!.id, reason: "" });
    await logEntry(client, job!.id, REMOVED);
    assert.equal(fs.existsSync(path.join(daemon.outputRoot, "queued")), false);
  });
});

describe("jobs that end while no run of theirs is going on", () => {
  test("kill -9 with a provider that cannot resume: FAILED at the next start, and its files removed", async () => {
    const first = await start();
    const { job } = await first.client.unary("submitJob", {
      definition: { provider: "fake-noresume", vm: "nr?size=4194304&chunk=65536&delayMs=10", outputDir: "noresume" },
    });
    await waitForJob(first.client, job!.id, hasBytes(65536));
    await first.daemon.kill();
    assert.deepEqual(tree(path.join(first.daemon.outputRoot, "noresume")), ["nr", `nr/nr-disk-1.img${partial(job!.id)}`]);
    const second = await start(respawnOptions(first.daemon));
    const { job: ended } = await second.client.unary("getJob", { jobId: job!.id });
    assert.equal(ended!.state, JobState.FAILED);
    await logEntry(second.client, job!.id, REMOVED);
    assert.equal(fs.existsSync(path.join(first.daemon.outputRoot, "noresume")), false);
    assert.equal(await second.daemon.stop(), 0);
  });

  test("a job that ended before its files were removed (the daemon stopped in between) is cleaned up at the next start", async () => {
    const dataDir = tempDir("cleanup-data");
    const outputDir = tempDir("cleanup-out");
    const first = await startEngine({}, { dataDir, outputDir });
    const { job } = await first.engine.submit(fakeDefinition(outputDir, "late?size=4194304&chunk=65536&delayMs=10"), { actor: "test" });
    await waitFor("bytes on disk", async () => ((await first.engine.getJob(job.id)).progress.bytesDone > 65536 ? true : undefined));
    await first.engine.shutdown(2000); // the job goes back to the queue, its files and ledger stay
    // What a cancel commits when the daemon dies right after it, before removing anything: the final state only.
    const seq = await initialSeq(first.store) + 1;
    const moved = await first.store.transition({ jobId: job.id, from: ["queued"], to: "cancelled", seq, time: Date.now(), endTime: Date.now(), reason: "test", actor: "test" });
    assert.ok(moved);
    await first.store.close();
    assert.deepEqual(tree(outputDir), ["late", `late/late-disk-1.img${partial(job.id)}`]);

    const second = await startEngine({}, { dataDir, outputDir });
    cleanups.push(() => second.close());
    assert.deepEqual((await second.store.endedJobsWithCheckpoint()).map((j) => j.id), [job.id], "what the start looks at: the ended job with files on record");
    const logged = async () => (await second.engine.readLogs(job.id, { afterId: 0, tail: 0, limit: 1000 })).entries.some((e) => e.message.startsWith(REMOVED));
    await waitFor("the removal in the job log", async () => (await logged()) || undefined);
    assert.deepEqual(tree(outputDir), []);
    // Nothing left to do for it: its checkpoint is gone, and the next start does not look at it again.
    await waitFor("the checkpoint cleared", async () => ((await second.store.loadCheckpoint(job.id)) === undefined ? true : undefined));
    assert.deepEqual(await second.store.endedJobsWithCheckpoint(), []);
  });
});

describe("vSphere provider against vcsim-export", () => {
  let skipReason: string | undefined;
  let daemon: DaemonProcess;
  let client: GrpcJsClient;
  const sims: Vcsim[] = [];
  before(async () => {
    skipReason = (await buildVcsim()).reason;
    if (skipReason) {
      console.log(`skipping the vSphere cleanup tests: ${skipReason}`);
      return;
    }
    ({ daemon, client } = await start());
    cleanups.push(async () => {
      for (const sim of sims) await sim.stop();
    });
  });

  async function simulator(env: Record<string, string> = {}): Promise<Vcsim> {
    const sim = await startVcsim([], env);
    sims.push(sim);
    return sim;
  }
  const connection = (sim: Vcsim) => ({ url: sim.url, username: "user", password: "pass", insecure: true });

  test("OVF: during the download only .partial names exist; cancel removes them and the VM directory, an unrelated file stays", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const sim = await simulator({ VCSIM_EXPORT_RATE: "500000" });
    const vm = sim.vms[0]!;
    fs.writeFileSync(vm.disks[0]!.file, randomBytes(4 * 1024 * 1024));
    const out = path.join(daemon.outputRoot, "ovf-cancel");
    fs.mkdirSync(out);
    fs.writeFileSync(path.join(out, "README.txt"), "someone else's");
    const { job } = await client.unary("submitJob", { definition: { provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "ovf-cancel" } });
    await waitForJob(client, job!.id, hasBytes(600_000));
    const during = tree(path.join(out, vm.name));
    assert.ok(during.length > 0 && during.every((name) => name.endsWith(partial(job!.id))), `only partial names mid-download: ${during.join(", ")}`);
    assert.ok(during.includes(`${vm.name}-disk-1.vmdk${partial(job!.id)}`), during.join(", "));
    await client.unary("cancelJob", { jobId: job!.id, reason: "" });
    await logEntry(client, job!.id, REMOVED);
    assert.deepEqual(tree(out), ["README.txt"]);
  });

  test("streamed OVA: cancel mid-download removes the .ova.partial; another file of the directory stays", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const sim = await simulator({ VCSIM_EXPORT_RATE: "500000" });
    const vm = sim.vms[1]!;
    fs.writeFileSync(vm.disks[0]!.file, randomBytes(4 * 1024 * 1024));
    const out = path.join(daemon.outputRoot, "ova-cancel");
    fs.mkdirSync(out);
    fs.writeFileSync(path.join(out, "older.ova"), "an older export");
    const { job } = await client.unary("submitJob", { definition: { provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "ova-cancel", format: ExportFormat.OVA } });
    await waitForJob(client, job!.id, hasBytes(600_000));
    assert.deepEqual(tree(out), [`${vm.name}.ova${partial(job!.id)}`, "older.ova"]);
    await client.unary("cancelJob", { jobId: job!.id, reason: "" });
    const removed = await logEntry(client, job!.id, REMOVED);
    assert.deepEqual(removed.fields.files, [path.join(out, `${vm.name}.ova${partial(job!.id)}`)]);
    assert.deepEqual(tree(out), ["older.ova"]);
  });

  test("kill -9 mid-export, restart: the export resumes from the .partial bytes and completes with no .partial left", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const sim = await simulator({ VCSIM_EXPORT_RATE: "1000000" });
    const vm = sim.vms[2]!;
    const source = randomBytes(4 * 1024 * 1024);
    fs.writeFileSync(vm.disks[0]!.file, source);
    const first = await start();
    const { job } = await first.client.unary("submitJob", { definition: { provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "crash" } });
    // Past a checkpoint (every second) and short of the end.
    await waitForJob(first.client, job!.id, hasBytes(1_800_000));
    await first.daemon.kill();
    const dir = path.join(first.daemon.outputRoot, "crash", vm.name);
    assert.ok(tree(dir).every((name) => name.endsWith(partial(job!.id))), tree(dir).join(", "));

    const second = await start(respawnOptions(first.daemon));
    const done = await waitForJob(second.client, job!.id, isFinal, { timeoutMs: 60_000 });
    assert.equal(done.state, JobState.COMPLETED, done.error?.message);
    const { entries } = await second.client.unary("getJobLogs", { jobId: job!.id });
    const starts = entries.filter((e) => e.message === "download started").map((e) => JSON.parse(e.fieldsJson) as { file: string; fromByte: number });
    const disk = starts.filter((s) => s.file === `${vm.name}-disk-1.vmdk`).map((s) => s.fromByte);
    assert.equal(disk.length, 2, JSON.stringify(starts));
    assert.ok(disk[0] === 0 && disk[1]! > 1_000_000, `the second run resumed from the bytes of the killed run: ${JSON.stringify(starts)}`);
    assert.ok(fs.readFileSync(path.join(dir, `${vm.name}-disk-1.vmdk`)).equals(source));
    assert.deepEqual(tree(first.daemon.outputRoot).filter((name) => name.endsWith(".partial")), []);
    assert.equal(await second.daemon.stop(), 0);
  });

  test("disk full (ENOSPC on an 8 MiB tmpfs): FAILED naming the file and the free space, and the space released", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const mountPoint = path.join(daemon.outputRoot, "small-disk");
    fs.mkdirSync(mountPoint);
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=8m", "tmpfs", mountPoint], { stdio: "pipe" });
    } catch (err) {
      const reason = `cannot mount a small tmpfs here (needs root): ${(err as Error).message.split("\n")[0]}`;
      console.log(`skipping the ENOSPC test: ${reason}`);
      return t.skip(reason);
    }
    cleanups.push(() => {
      execFileSync("umount", ["--lazy", mountPoint]);
    });
    const freeBytes = () => {
      const s = fs.statfsSync(mountPoint);
      return s.bavail * s.bsize;
    };
    const before = freeBytes();
    const sim = await simulator();
    const vm = sim.vms[3]!;
    fs.writeFileSync(vm.disks[0]!.file, randomBytes(12 * 1024 * 1024));
    const { job } = await client.unary("submitJob", { definition: { provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "small-disk" } });
    const ended = await waitForJob(client, job!.id, isFinal, { timeoutMs: 60_000 });
    assert.equal(ended.state, JobState.FAILED);
    assert.equal(ended.error!.code, "RESOURCE_EXHAUSTED");
    assert.equal(ended.attempt, 1, "a full disk is not retried");
    assert.match(ended.error!.message, new RegExp(`writing ${mountPoint}/${vm.name}/${vm.name}-disk-1\\.vmdk${partial(job!.id).replace(/\./g, "\\.")} .*ENOSPC.*\\(\\d+(\\.\\d)? [KM]?i?B free of 8 MiB on the filesystem of ${mountPoint}/${vm.name}\\)`));
    const removed = await logEntry(client, job!.id, REMOVED);
    assert.ok((removed.fields.bytes_released as number) > 6 * 1024 * 1024, JSON.stringify(removed.fields));
    assert.deepEqual(tree(mountPoint), []);
    assert.equal(freeBytes(), before, "every byte the job took is free again");
  });
});
