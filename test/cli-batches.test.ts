// hyperctl and batches, as a user runs it: `node bin/hyperctl.js ...` against a real daemon with the
// fake provider's fleet folders (test/support/fake-provider.ts: /DC1/vm/fleet 6 quick VMs, mixed
// with one VM that always fails, slow 6 VMs of ~3 s each). Output parsed, exit codes checked; the
// in-place redraw in a pseudo-terminal through util-linux `script`.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { BatchSchema, BatchState, createHypervisordClient, HypervisordService, JobEventKind, JobState, type Batch, type StreamJobUpdatesRequest } from "../clients/node/index.ts";
import { spawnDaemon, type DaemonProcess } from "./support/daemon-process.ts";
import { hasScript, HYPERCTL_BIN, hyperctlEnv, runHyperctl, type HyperctlRun } from "./support/hyperctl.ts";

const FLEET = ["fleet-01", "fleet-02", "fleet-03", "fleet-04", "fleet-05", "fleet-06"];

let d: DaemonProcess;

const hyperctl = (args: string[], server = d.httpUrl) => runHyperctl(args, { server, timeoutMs: 45_000 });

async function ok(args: string[]): Promise<string> {
  const run = await hyperctl(args);
  assert.equal(run.code, 0, `hyperctl ${args.join(" ")}: ${run.stderr}`);
  return run.stdout;
}

async function json<T = any>(args: string[]): Promise<T> {
  return JSON.parse(await ok([...args, "-o", "json"])) as T;
}

const exportArgs = (folder: string, ...extra: string[]) => ["export", "--provider", "fake", "--folder", `/DC1/vm/${folder}`, ...extra];

describe("hyperctl and batches", () => {
  before(async () => {
    d = await spawnDaemon();
  });
  after(async () => {
    if (d) assert.equal(await d.stop(), 0, "daemon exit code");
  });

  test("export --folder --watch without a terminal: a line per VM as it changes, a total, exit 0 when every VM completed", async () => {
    const run = await hyperctl([...exportArgs("fleet"), "--max-parallel", "3", "--watch"]);
    assert.equal(run.code, 0, run.stderr + run.stdout);
    assert.ok(!run.stdout.includes("\r") && !run.stdout.includes("\x1b"), "no redrawing when stdout is not a terminal");
    const lines = run.stdout.trim().split("\n");
    const batchId = /^batch (\S+) submitted: 6 VMs$/.exec(lines[0]!)?.[1];
    assert.ok(batchId, lines[0]);
    for (const vm of FLEET) {
      const own = lines.filter((l) => new RegExp(`^\\S+  ${vm}  `).test(l));
      assert.ok(own.length >= 1, `a line for ${vm}:\n${run.stdout}`);
      assert.match(own.at(-1)!, new RegExp(`  ${vm}  completed  100%  64 KiB/64 KiB$`), own.join("\n"));
    }
    const totals = lines.filter((l) => /^\S+  total  6 VMs: /.test(l));
    assert.ok(totals.length >= 1, run.stdout);
    assert.match(totals.at(-1)!, /  total  6 VMs: 6 completed  100%  384 KiB\/384 KiB$/);
    assert.match(lines.at(-1)!, new RegExp(`^batch ${batchId} completed in \\S+: 6 completed$`));

    // The batch as the daemon keeps it.
    const { batch } = await json(["batches", "get", batchId]);
    assert.equal(batch.state, "BATCH_STATE_COMPLETED");
    assert.equal(batch.counts.completed, 6);
    assert.equal(batch.maxParallel, 3);
    assert.deepEqual(batch.jobs.map((j: { vmName: string }) => j.vmName), FLEET);
  });

  test("export --folder without --watch prints the batch and its VMs; -q the id; -o json the response with the batch", async () => {
    const glob = [...exportArgs("fleet"), "--name-glob", "fleet-0?", "--power-state", "off", "--request-id", "cli-batches-1"];
    const [table, quietOut, submitted] = await Promise.all([
      ok([...exportArgs("fleet"), "--name", "nightly-fleet"]),
      ok(["-q", ...exportArgs("fleet", "--power-state", "on")]),
      json(glob),
    ]);
    const [head, , header, ...rows] = table.trim().split("\n");
    assert.match(head!, /^batch \S+ submitted: 6 VMs$/);
    assert.match(header!, /^VM +JOB +STATE +SIZE/);
    assert.deepEqual(rows.map((r) => r.split(/ +/)[0]), FLEET);

    const quiet = quietOut.trim();
    assert.match(quiet, /^\S+$/, "only the batch id");
    const { batch: onOnly } = await json(["batches", "get", quiet]);
    assert.equal(onOnly.jobs.length, 4, "4 of the fleet's 6 VMs are powered on");

    assert.equal(submitted.created, true);
    assert.ok(submitted.batch.id);
    assert.equal(submitted.job, undefined, "no single job for a selector");
    assert.deepEqual(submitted.batch.jobs.map((j: { vmName: string }) => j.vmName), ["fleet-05", "fleet-06"], "the glob and the power state, both");
    assert.equal(submitted.batch.definition.vmSelector.nameGlob, "fleet-0?");
    const again = await json(glob);
    assert.equal(again.created, false, "the same request id returns the same batch");
    assert.equal(again.batch.id, submitted.batch.id);
  });

  test("a partially failed batch: exit 1, the failed VM named; batches get shows every VM with its error", async () => {
    const run = await hyperctl([...exportArgs("mixed"), "--watch"]);
    assert.equal(run.code, 1, run.stderr + run.stdout);
    const last = run.stdout.trim().split("\n").at(-1)!;
    assert.match(last, /^batch (\S+) partially-failed in \S+: 2 completed, 1 failed; not exported: mixed-02$/);
    const batchId = /^batch (\S+) /.exec(last)![1]!;
    const details = await ok(["batches", "get", batchId]);
    assert.match(details, /^State: +partially-failed$/m);
    assert.match(details, /^VMs: +3: 2 completed, 1 failed$/m);
    assert.match(details, /^mixed-02 +\S+ +failed +.*INTERNAL: fake failure/m);
    assert.match(details, /^mixed-01 +\S+ +completed /m);
  });

  test("jobs list --batch: only that batch's jobs; list --batch the same", async () => {
    const batchId = (await ok(["-q", ...exportArgs("fleet")])).trim();
    const { batch } = await json(["batches", "get", batchId]);
    const listed = await json(["jobs", "list", "--batch", batchId]);
    assert.equal(listed.jobs.length, 6);
    assert.deepEqual(new Set(listed.jobs.map((j: { id: string }) => j.id)), new Set(batch.jobs.map((j: { jobId: string }) => j.jobId)));
    assert.ok(listed.jobs.every((j: { batchId: string }) => j.batchId === batchId));
    const [quiet, child] = await Promise.all([ok(["-q", "list", "--batch", batchId]), ok(["jobs", "get", batch.jobs[0].jobId])]);
    assert.equal(quiet.trim().split("\n").length, 6);
    assert.match(child, new RegExp(`^Batch: +${batchId}$`, "m"), "a child job names its batch");
  });

  test("batches cancel: the jobs not ended are cancelled, the batch ends cancelled; watching it exits 2", async () => {
    const batchId = (await ok(["-q", ...exportArgs("slow"), "--max-parallel", "1"])).trim();
    const cancelled = await ok(["batches", "cancel", batchId, "--reason", "maintenance window closed"]);
    assert.match(cancelled, new RegExp(`^batch ${batchId} (cancelled|running): `));
    const watched = await hyperctl(["batches", "watch", batchId]);
    assert.equal(watched.code, 2, watched.stderr + watched.stdout);
    assert.match(watched.stdout.trim().split("\n").at(-1)!, new RegExp(`^batch ${batchId} cancelled in \\S+: .*cancelled`));
    const { batch } = await json(["batches", "get", batchId]);
    assert.equal(batch.state, "BATCH_STATE_CANCELLED");
    assert.ok(batch.counts.cancelled >= 5, `at most one of 6 slow VMs can have ended before the cancel: ${JSON.stringify(batch.counts)}`);
    const history = await json(["get", batch.jobs.at(-1).jobId]);
    assert.equal(history.job.state, "JOB_STATE_CANCELLED");
  });

  test("batches list: newest first, --state filter, -q ids, --limit with the next page's token", async () => {
    const all = await json(["batches", "list"]);
    assert.ok(all.batches.length >= 5, `batches so far: ${all.batches.length}`);
    const times = all.batches.map((b: { createTime: string }) => Date.parse(b.createTime));
    assert.deepEqual(times, [...times].sort((a, b) => b - a), "newest first");
    const [table, completed, failedOrCancelled, first, quiet] = await Promise.all([
      ok(["batches", "list"]),
      json(["batches", "list", "--state", "completed"]),
      json(["batches", "list", "--state", "partially-failed,cancelled"]),
      ok(["batches", "list", "--limit", "2"]),
      ok(["-q", "batches", "list"]),
    ]);
    assert.match(table.split("\n")[0]!, /^ID +NAME +STATE +VMS +COUNTS +SIZE +CREATED$/);
    assert.match(table, /cancelled +\d\/6 done/);
    assert.match(table, /partially-failed +3\/3 done +2 completed, 1 failed/);
    assert.ok(completed.batches.length >= 1);
    assert.ok(completed.batches.every((b: { state: string }) => b.state === "BATCH_STATE_COMPLETED"));
    assert.deepEqual(new Set(failedOrCancelled.batches.map((b: { state: string }) => b.state)), new Set(["BATCH_STATE_PARTIALLY_FAILED", "BATCH_STATE_CANCELLED"]));
    assert.deepEqual(quiet.trim().split("\n"), all.batches.map((b: { id: string }) => b.id));
    const token = /next page: --page-token (\S+)\)$/m.exec(first)?.[1];
    assert.ok(token, first);
    const second = await json(["batches", "list", "--limit", "2", "--page-token", token]);
    assert.deepEqual(second.batches.map((b: { id: string }) => b.id), all.batches.slice(2, 4).map((b: { id: string }) => b.id));
  });

  test("watch on a terminal redraws one line per VM and a total in place", async (t) => {
    if (!hasScript()) return t.skip("util-linux `script` is not installed: no pseudo-terminal to test with");
    const command = `${process.execPath} ${HYPERCTL_BIN} ${exportArgs("fleet", "--max-parallel", "2", "--watch").join(" ")}`;
    const run = await new Promise<HyperctlRun>((resolve) => {
      const child = spawn("script", ["-qfec", command, "/dev/null"], { env: { ...hyperctlEnv(d.httpUrl), COLUMNS: "120", LINES: "40" }, stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
      child.once("close", (code) => resolve({ code, stdout, stderr: "" }));
    });
    assert.equal(run.code, 0, run.stdout);
    // Each frame starts by going back up over the previous block (ESC [ n A) and clearing to the end (ESC [ J).
    const frames = run.stdout.split(/\x1b\[\d+A\r|\x1b\[J/).filter((f) => f.trim());
    assert.ok(run.stdout.includes("\x1b[7A\r"), "the 6 VM lines and the total redrawn in place");
    const blocks = frames.filter((f) => /^total /m.test(f));
    assert.ok(blocks.length >= 2, `redrawn: ${JSON.stringify(run.stdout.slice(0, 600))}`);
    const final = blocks.at(-1)!.replace(/\r/g, "").trim().split("\n");
    assert.equal(final.length, 8, `6 VMs, the total, the outcome: ${JSON.stringify(final)}`);
    for (const [i, vm] of FLEET.entries()) assert.match(final[i]!, new RegExp(`^${vm} +\\[#{16}\\] +100%  completed +64 KiB/64 KiB`));
    assert.match(final[6]!, /^total +\[#{16}\] +100%  384 KiB\/384 KiB  6 completed$/);
    assert.match(final[7]!, /^batch \S+ completed in /);
  });

  test("bad input: a clear error and the right exit code, naming the option or the field", async () => {
    const vm = ["export", "--provider", "fake", "--vm", "web-01"];
    const cases: [string[], number, RegExp][] = [
      [[...vm, "--folder", "/DC1/vm/fleet"], 2, /^error: --vm names one VM; --folder and --name-glob select several: give one or the other\n\(add --help for usage\)/],
      [["export", "--provider", "fake"], 2, /^error: required option '--vm <vm>' not specified \(or select several VMs with --folder and\/or --name-glob\)/],
      [[...vm, "--max-parallel", "2"], 2, /^error: --max-parallel: only with --folder or --name-glob/],
      [[...vm, "--running-vm-policy", "hibernate"], 2, /--running-vm-policy must be one of snapshot, power_off, fail, got "hibernate"/],
      [[...exportArgs("fleet"), "--max-parallel", "5000"], 2, /--max-parallel.*expected an integer from 0 to 1000/],
      [["batches", "list", "--state", "done"], 2, /--state must be one of running, completed, partially-failed, failed, cancelled, got "done"/],
      [[...vm, "--power-off", "--running-vm-policy", "fail"], 2, /^hyperctl: --power-off contradicts --running-vm-policy fail/],
      // Refused by the daemon: exit 1, its message naming the field.
      [[...exportArgs("fleet"), "--name-glob", "nothing-*"], 1, /^hyperctl: .*vm_selector/m],
      [["batches", "get", "no-such-batch"], 1, /^hyperctl: .*no-such-batch/],
    ];
    const runs = await Promise.all(cases.map(([args]) => hyperctl(args)));
    for (const [i, [args, code, message]] of cases.entries()) {
      assert.equal(runs[i]!.code, code, `hyperctl ${args.join(" ")}: ${runs[i]!.stderr}`);
      assert.match(runs[i]!.stderr, message, `hyperctl ${args.join(" ")}`);
      assert.equal(runs[i]!.stdout, "", "nothing on stdout");
    }
  });

  test("single VMs take the running-VM options too: the definition carries them", async () => {
    const job = await json(["export", "--provider", "fake", "--vm", "web-01", "--running-vm-policy", "power-off", "--no-quiesce", "--quiesce-policy", "fail"]);
    assert.equal(job.job.definition.runningVmPolicy, "power_off");
    assert.equal(job.job.definition.quiesce, false);
    assert.equal(job.job.definition.quiescePolicy, "fail");
    const details = await ok(["get", job.job.id]);
    assert.match(details, /^Running VM: +power_off, no quiesce, quiesce fail$/m);
    assert.doesNotMatch(details, /^Batch:/m, "a job of its own");
  });

  test("completion knows batches and the selector options", async () => {
    const bash = await ok(["completion", "bash"]);
    assert.match(bash, /"batches"\)\n(.*\n)*? {6}words="list get cancel watch /);
    assert.match(bash, /"export"\)\n(.*\n)*? {8}--running-vm-policy\) COMPREPLY=\(\$\(compgen -W "snapshot power_off fail"/);
    assert.match(bash, /"export"\)\n(.*\n)*? {6}words=".*--folder --name-glob --power-state --no-recursive --max-parallel/);
    assert.match(bash, /"jobs list"\)\n(.*\n)*? {6}words=".*--batch/);
    execFileSync("bash", ["-n"], { input: bash });
  });
});

/**
 * A stand-in daemon whose update stream drops once (UNAVAILABLE, as when the daemon restarts) after a
 * child's snapshot and the running batch; the second stream sends only SYNCED, and by then GetBatch says
 * the batch has completed: a watcher that missed the final BATCH_CHANGED must still see the end.
 */
async function startDroppingDaemon() {
  const requests: StreamJobUpdatesRequest[] = [];
  const batch = (state: BatchState, jobState: JobState): Batch => create(BatchSchema, {
    id: "b-1", name: "/DC1/vm/two", state, counts: { total: 1, completed: jobState === JobState.COMPLETED ? 1 : 0, running: jobState === JobState.RUNNING ? 1 : 0 },
    jobs: [{ jobId: "j-1", vm: "/DC1/vm/two/two-01", vmName: "two-01", state: jobState, bytesDone: jobState === JobState.COMPLETED ? 10n : 4n, bytesTotal: 10n }],
  });
  const handler = connectNodeAdapter({
    routes: (router) => router.service(HypervisordService, {
      async *streamJobUpdates(request, context) {
        requests.push(request);
        if (requests.length === 1) {
          yield { seq: 5n, jobId: "j-1", kind: JobEventKind.SNAPSHOT, state: JobState.RUNNING, progress: { phase: "downloading", percent: 50, bytesDone: 5n, bytesTotal: 10n, bytesPerSecond: 3 * 2 ** 20 } };
          yield { seq: 6n, kind: JobEventKind.BATCH_CHANGED, batch: batch(BatchState.RUNNING, JobState.RUNNING) };
          throw new ConnectError("daemon restarting", Code.Unavailable);
        }
        yield { seq: 9n, kind: JobEventKind.SYNCED };
        await new Promise((resolve) => context.signal.addEventListener("abort", resolve, { once: true }));
      },
      getBatch: async () => ({ batch: requests.length >= 2 ? batch(BatchState.COMPLETED, JobState.COMPLETED) : batch(BatchState.RUNNING, JobState.RUNNING) }),
    }),
  });
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

describe("watchBatch over a stream that drops", () => {
  test("the client reconnects with after_seq and reads the batch again after SYNCED; hyperctl says so and exits 0", async () => {
    const fake = await startDroppingDaemon();
    const client = createHypervisordClient({ url: fake.url });
    try {
      const seen: BatchState[] = [];
      const reconnects: bigint[] = [];
      const final = await client.watchBatch("b-1", {
        onBatch: (b) => seen.push(b.state),
        onReconnect: ({ afterSeq }) => reconnects.push(afterSeq!),
        backoff: { initialMs: 10, maxMs: 10 },
      });
      assert.equal(final.state, BatchState.COMPLETED);
      assert.deepEqual(reconnects, [6n]);
      assert.deepEqual(fake.requests.map((r) => [r.batchIds, r.afterSeq]), [[["b-1"], undefined], [["b-1"], 6n]]);
      assert.deepEqual(seen, [BatchState.RUNNING, BatchState.COMPLETED], "the BATCH_CHANGED, then GetBatch after SYNCED");

      fake.requests.length = 0;
      const run = await hyperctl(["batches", "watch", "b-1"], fake.url);
      assert.equal(run.code, 0, run.stderr + run.stdout);
      assert.match(run.stderr, /^hyperctl: update stream of batch b-1 dropped \(daemon restarting\); reconnecting, attempt 1$/m);
      // The child's snapshot came before the batch named it: its progress is not lost.
      assert.match(run.stdout, /^\S+  two-01  running  downloading  50\.0%  5 B\/10 B  3\.0 MiB\/s$/m);
      assert.match(run.stdout.trim().split("\n").at(-1)!, /^batch b-1 completed: 1 completed$/);
    } finally {
      client.close();
      await fake.close();
    }
  });
});
