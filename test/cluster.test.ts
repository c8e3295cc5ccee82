// Several daemons on one PostgreSQL store: claims, leases and failover, cancel and streams across nodes,
// schedule leadership, the webhook outbox, and a PostgreSQL restart under load. Real daemon processes
// (kill -9 is a real crash) on a throw-away PostgreSQL cluster.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { JobState } from "../gen/hypervisord/v1/job_pb.js";
import { JobEventKind } from "../gen/hypervisord/v1/service_pb.js";
import { OverlapPolicy } from "../gen/hypervisord/v1/schedule_pb.js";
import { createGrpcJsClient, type GrpcJsClient } from "./support/clients.ts";
import { spawnDaemon, type DaemonProcess } from "./support/daemon-process.ts";
import { fakeDiskBytes } from "./support/fake-provider.ts";
import { postgresSkipReason, startPostgres, type Postgres } from "./support/postgres.ts";
import { tempDir } from "./support/temp-dir.ts";
import { waitFor } from "./support/wait-for.ts";
import { startWebhookReceiver } from "./support/webhook-receiver.ts";
import { verifySignature } from "../src/webhooks/signing.ts";

const skip = postgresSkipReason();
if (skip) process.stdout.write(`# skipping the cluster tests: ${skip}\n`);

/** One key for every node: stored secrets (webhook secrets) must open on all of them. */
const KEY = Buffer.alloc(32, 7).toString("base64");
const FAST = "size=1000&chunk=1000&delayMs=0";
const SECRET = `whsec_${Buffer.from("a webhook signing secret of the test").toString("base64")}`;

interface Node {
  daemon: DaemonProcess;
  client: GrpcJsClient;
  id: string;
}

let pg: Postgres;
const cleanups: (() => Promise<unknown> | void)[] = [];

async function startNode(url: string, id: string, outputRoot: string, options: { leaseTimeout?: string; slots?: number; config?: string } = {}): Promise<Node> {
  const daemon = await spawnDaemon({
    outputRoot,
    args: ["--store", url, "--max-concurrent-jobs", String(options.slots ?? 4), ...(options.config ? ["--config", options.config] : [])],
    env: { HYPERVISORD_NODE_ID: id, HYPERVISORD_ENCRYPTION_KEY: KEY, HYPERVISORD_LEASE_TIMEOUT: options.leaseTimeout ?? "30s" },
  });
  const client = createGrpcJsClient(daemon.grpcAddress);
  cleanups.push(() => daemon.kill(), () => client.close());
  return { daemon, client, id };
}

async function startCluster(n: number, options: { leaseTimeout?: string; slots?: number; config?: string } = {}) {
  const url = await pg.createDatabase();
  const outputRoot = tempDir("shared-root");
  // One after the other: the first migrates, the others find the schema (a race is covered by the store tests).
  const nodes: Node[] = [];
  for (let i = 0; i < n; i++) nodes.push(await startNode(url, `node-${"abc"[i]}`, outputRoot, options));
  return { url, outputRoot, nodes };
}

const job = (client: GrpcJsClient, jobId: string) => client.unary("getJob", { jobId }).then((r) => r.job!);

describe("a cluster of daemons on one PostgreSQL", { skip }, () => {
  before(async () => {
    pg = await startPostgres();
  });
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
    await pg?.stop();
  });

  test("GetStatus names the node and the store; 300 jobs submitted through 3 nodes each run exactly once", async () => {
    const { nodes } = await startCluster(3);
    const status = await nodes[0]!.client.unary("getStatus", {});
    assert.equal(status.store, "postgres");
    assert.equal(status.nodeId, "node-a");
    assert.equal(status.cluster?.databaseReachable, true);
    const health = await (await fetch(`${nodes[0]!.daemon.httpUrl}/health`)).json() as { checks: { cluster?: Record<string, unknown> } };
    assert.equal(health.checks.cluster?.node_id, "node-a");
    assert.equal(health.checks.cluster?.status, "healthy");
    assert.ok(health.checks.cluster?.last_lease_renewal, "the lease renewal is reported");

    const ids = await Promise.all(Array.from({ length: 300 }, async (_, i) => {
      const node = nodes[i % 3]!;
      const { job: submitted } = await node.client.unary("submitJob", { definition: { provider: "fake", vm: `web-01?${FAST}`, outputDir: `many/${i}` } });
      return submitted!.id;
    }));
    await waitFor("300 jobs completed", async () => {
      const s = await nodes[1]!.client.unary("getStatus", {});
      return Number(s.jobCounts?.completed ?? 0) === 300 && s;
    }, 120_000, 200);
    const ranOn = new Map<string, number>();
    for (const id of ids) {
      const { transitions } = await nodes[2]!.client.unary("getJobHistory", { jobId: id });
      const starts = transitions.filter((t) => t.toState === JobState.RUNNING);
      assert.equal(starts.length, 1, `job ${id} started ${starts.length} times`);
      const done = await job(nodes[0]!.client, id);
      assert.equal(done.state, JobState.COMPLETED);
      assert.equal(done.attempt, 1);
      ranOn.set(done.nodeId, (ranOn.get(done.nodeId) ?? 0) + 1);
    }
    assert.deepEqual([...ranOn.keys()].sort(), ["node-a", "node-b", "node-c"], `jobs ran on ${JSON.stringify([...ranOn])}`);
  });

  test("a stream on one node sees the jobs of the others in seq order, without gaps; after_seq resumes on another node", async () => {
    const { nodes } = await startCluster(3);
    const [a, b, c] = nodes as [Node, Node, Node];
    const stream = a.client.stream("streamJobUpdates", {});
    const updates: { seq: bigint; jobId: string; kind: JobEventKind; state: JobState }[] = [];
    let synced = false;
    stream.on("data", (u: { seq: bigint; jobId: string; kind: JobEventKind; state: JobState }) => {
      if (u.kind === JobEventKind.SYNCED) synced = true;
      else if (synced) updates.push({ seq: u.seq, jobId: u.jobId, kind: u.kind, state: u.state });
    });
    stream.on("error", () => undefined);
    await waitFor("synced", () => synced, 10_000, 20);
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) {
      for (const node of [b, c]) {
        const { job: submitted } = await node.client.unary("submitJob", { definition: { provider: "fake", vm: `web-02?size=4000&chunk=1000&delayMs=20`, outputDir: `stream/${ids.length}` } });
        ids.push(submitted!.id);
      }
    }
    await waitFor("every job's completion streamed", () => ids.every((id) => updates.some((u) => u.jobId === id && u.state === JobState.COMPLETED)), 60_000, 50);
    stream.cancel();
    for (let i = 1; i < updates.length; i++) assert.ok(updates[i]!.seq > updates[i - 1]!.seq, `seq ${updates[i]!.seq} after ${updates[i - 1]!.seq}`);
    const streamed = new Set(updates.map((u) => u.seq));
    for (const id of ids) {
      const { transitions } = await a.client.unary("getJobHistory", { jobId: id });
      for (const t of transitions) assert.ok(streamed.has(t.seq), `transition ${t.seq} of job ${id} (${JobState[t.toState]}) was not streamed on node-a`);
    }
    // Resuming on node-c after the first half: exactly the state changes after that seq, none before.
    const middle = updates.filter((u) => u.kind !== JobEventKind.PROGRESS)[Math.floor(updates.length / 4)]!.seq;
    const resumed: bigint[] = [];
    const again = c.client.stream("streamJobUpdates", { afterSeq: middle, jobIds: ids });
    await new Promise<void>((resolve, reject) => {
      again.on("data", (u: { seq: bigint; kind: JobEventKind }) => {
        if (u.kind === JobEventKind.SYNCED) {
          again.cancel();
          resolve();
        } else resumed.push(u.seq);
      });
      again.on("error", (err: { code?: number }) => (err.code === 1 ? resolve() : reject(err)));
    });
    const expected = updates.filter((u) => u.seq > middle && u.kind !== JobEventKind.PROGRESS).map((u) => u.seq);
    assert.deepEqual(resumed, expected);
  });

  test("CancelJob on one node stops the job running on another within a second", async () => {
    const { nodes } = await startCluster(2);
    const { job: submitted } = await nodes[0]!.client.unary("submitJob", { definition: { provider: "fake", vm: "web-03?size=100000000&chunk=100000&delayMs=50", outputDir: "cancel" } });
    const running = await waitFor("running", async () => {
      const j = await job(nodes[0]!.client, submitted!.id);
      return j.state === JobState.RUNNING && Number(j.progress?.bytesDone ?? 0) > 0 && j;
    }, 20_000, 50);
    const runner = nodes.find((n) => n.id === running.nodeId)!;
    const other = nodes.find((n) => n.id !== running.nodeId)!;
    const t0 = Date.now();
    const { job: cancelled } = await other.client.unary("cancelJob", { jobId: submitted!.id, reason: "from the other node" });
    assert.equal(cancelled!.state, JobState.CANCELLED);
    await waitFor("the run stopped on the node that ran it", () => runner.daemon.logs.some((l) => l.includes(submitted!.id) && l.includes("export stopped after cancel")), 5_000, 20);
    const stoppedMs = Date.now() - t0;
    assert.ok(stoppedMs <= 1_000, `the run stopped ${stoppedMs} ms after the cancel`);
  });

  test("kill -9 of the node running a job: another node resumes it from its checkpoint after the lease, same bytes, no attempt counted", async () => {
    const { nodes, outputRoot } = await startCluster(3, { leaseTimeout: "3s" });
    const size = 3_000_000;
    const { job: submitted } = await nodes[0]!.client.unary("submitJob", { definition: { provider: "fake", vm: `web-04?size=${size}&chunk=50000&delayMs=50`, outputDir: "failover" } });
    const running = await waitFor("running with some bytes", async () => {
      const j = await job(nodes[0]!.client, submitted!.id);
      return j.state === JobState.RUNNING && Number(j.progress?.bytesDone ?? 0) > 500_000 && j;
    }, 20_000, 50);
    const victim = nodes.find((n) => n.id === running.nodeId)!;
    const survivor = nodes.find((n) => n !== victim)!;
    const killedAt = Date.now();
    await victim.daemon.kill();
    const resumed = await waitFor("running again on another node", async () => {
      const j = await job(survivor.client, submitted!.id);
      return j.state !== JobState.QUEUED && j.nodeId !== victim.id && j;
    }, 20_000, 50);
    const failoverMs = Date.now() - killedAt;
    assert.ok(failoverMs <= 3_000 + 5_000, `failover took ${failoverMs} ms`);
    const done = await waitFor("completed", async () => {
      const j = await job(survivor.client, submitted!.id);
      assert.notEqual(j.state, JobState.FAILED, j.error?.message);
      return j.state === JobState.COMPLETED && j;
    }, 60_000, 100);
    assert.equal(done.attempt, 1, "the resume after a lost lease is not a new attempt");
    assert.notEqual(resumed.nodeId, victim.id);
    const { transitions } = await survivor.client.unary("getJobHistory", { jobId: submitted!.id });
    assert.ok(transitions.some((t) => t.actor === "recovery" && /lease/.test(t.reason)), "the requeue after the lease says why");
    const file = path.join(outputRoot, "failover", "web-04", "web-04-disk-1.img");
    assert.ok(fs.readFileSync(file).equals(fakeDiskBytes(0, size)), "the resumed disk is byte-identical");
    const resumer = nodes.find((n) => n.id === resumed.nodeId)!;
    assert.ok(resumer.daemon.logs.some((l) => l.includes(submitted!.id) && l.includes("resuming from checkpoint")), "resumed, not restarted");
  });

  test("a schedule firing every second fires once per due time while its leader is killed midway", async () => {
    const { nodes } = await startCluster(3);
    const { schedule } = await nodes[0]!.client.unary("createSchedule", {
      schedule: { name: "every-second", cron: "* * * * * *", jobTemplate: { provider: "fake", vm: "noop" }, overlapPolicy: OverlapPolicy.ALLOW },
    });
    await new Promise((r) => setTimeout(r, 5_000));
    const statuses = await Promise.all(nodes.map((n) => n.client.unary("getStatus", {})));
    const leaders = nodes.filter((_, i) => statuses[i]!.cluster?.schedulerLeader);
    assert.equal(leaders.length, 1, "exactly one node leads the schedules");
    await leaders[0]!.daemon.kill();
    const rest = nodes.filter((n) => n !== leaders[0]);
    await new Promise((r) => setTimeout(r, 5_000));
    await rest[0]!.client.unary("disableSchedule", { id: schedule!.id });
    await new Promise((r) => setTimeout(r, 1_500));
    const runs = [];
    let pageToken = "";
    do {
      const page = await rest[0]!.client.unary("listScheduleRuns", { scheduleId: schedule!.id, pageSize: 100, pageToken });
      runs.push(...page.runs);
      pageToken = page.nextPageToken;
    } while (pageToken);
    const times = runs.map((r) => Number(r.scheduledTime!.seconds));
    assert.equal(new Set(times).size, times.length, `a due time ran twice: ${times.sort().join(", ")}`);
    assert.ok(runs.length >= 8, `only ${runs.length} runs in about 10 s`);
    const after = await Promise.all(rest.map((n) => n.client.unary("getStatus", {})));
    assert.equal(after.filter((s) => s.cluster?.schedulerLeader).length, 1, "another node took the lead");
  });

  test("50 webhook events raised on three nodes are each delivered once, signed", async () => {
    const receiver = await startWebhookReceiver();
    cleanups.push(() => receiver.close());
    const config = path.join(tempDir("cluster-config"), "config.yaml");
    fs.writeFileSync(config, "webhooks:\n  allow_private_targets: true\n");
    const { nodes } = await startCluster(3, { config });
    await nodes[0]!.client.unary("createWebhook", { webhook: { url: receiver.url, secret: SECRET, events: ["job.completed"] } });
    await Promise.all(Array.from({ length: 50 }, (_, i) => nodes[i % 3]!.client.unary("submitJob", { definition: { provider: "fake", vm: `web-05?${FAST}`, outputDir: `hooks/${i}` } })));
    await waitFor("50 deliveries", () => receiver.requests.length >= 50, 60_000, 50);
    await new Promise((r) => setTimeout(r, 2_000));
    const events = receiver.requests.map((r) => ({ id: String(r.headers["webhook-id"]), ...(JSON.parse(r.body) as { type: string }) }));
    assert.equal(events.length, 50, `${events.length} deliveries`);
    assert.equal(new Set(events.map((e) => e.id)).size, 50, "each event once");
    for (const request of receiver.requests) assert.equal(verifySignature(SECRET, request.headers, request.body), true, "signed with the webhook's secret");
  });

  test("PostgreSQL restarted under load: the nodes go NOT_SERVING, come back by themselves, and every job completes", async () => {
    const { nodes } = await startCluster(2);
    const ids = await Promise.all(Array.from({ length: 40 }, async (_, i) => {
      const { job: submitted } = await nodes[i % 2]!.client.unary("submitJob", { definition: { provider: "fake", vm: "web-06?size=20000&chunk=1000&delayMs=25", outputDir: `restart/${i}` } });
      return submitted!.id;
    }));
    await new Promise((r) => setTimeout(r, 500));
    pg.stopServer();
    const health = await waitFor("/health 503 while the database is down", async () => {
      const res = await fetch(`${nodes[0]!.daemon.httpUrl}/health`);
      return res.status === 503 && res;
    }, 15_000, 100);
    assert.equal(health.status, 503);
    await new Promise((r) => setTimeout(r, 1_000));
    pg.startServer();
    await waitFor("/health 200 again", async () => (await fetch(`${nodes[0]!.daemon.httpUrl}/health`)).status === 200, 30_000, 200);
    await waitFor("every job completed", async () => {
      const states = await Promise.all(ids.map((id) => job(nodes[1]!.client, id).then((j) => j.state)));
      return states.every((s) => s === JobState.COMPLETED) || (states.some((s) => s === JobState.FAILED || s === JobState.CANCELLED) ? assert.fail(`a job ended ${states.map((s) => JobState[s]).join(",")}`) : false);
    }, 90_000, 250);
  });
});
