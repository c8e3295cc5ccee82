// An independent gRPC client: Python's C-core grpcio with stubs generated from proto/ by grpc_tools.protoc.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after, describe, test } from "node:test";
import { promisify } from "node:util";
import { JobState } from "../gen/hypervisord/v1/job_pb.js";
import { createGrpcJsClient } from "./support/clients.ts";
import { spawnDaemon, type DaemonProcess } from "./support/daemon-process.ts";
import { tempDir } from "./support/temp-dir.ts";

const run = promisify(execFile);
const PYTHON = "/usr/bin/python3";
const ROOT = path.resolve(import.meta.dirname, "..");
const PROTOS = fs.readdirSync(path.join(ROOT, "proto/hypervisord/v1")).filter((f) => f.endsWith(".proto")).map((f) => `hypervisord/v1/${f}`);

const SCRIPT = String.raw`
import json, sys, time
import grpc
from hypervisord.v1 import job_pb2, service_pb2, service_pb2_grpc

address = sys.argv[1]
out = {}
with grpc.insecure_channel(address) as channel:
    stub = service_pb2_grpc.HypervisordServiceStub(channel)
    definition = job_pb2.JobDefinition(provider="fake", vm="web-02?size=2000&chunk=1000&delayMs=0", labels={"client": "python"})
    submitted = stub.SubmitJob(service_pb2.SubmitJobRequest(definition=definition), timeout=10)
    job_id = submitted.job.id
    out["submit"] = {"id": job_id, "created": submitted.created, "state": job_pb2.JobState.Name(submitted.job.state),
                     "provider": submitted.job.definition.provider, "parallel_downloads": submitted.job.definition.parallel_downloads}
    deadline = time.time() + 30
    while True:
        job = stub.GetJob(service_pb2.GetJobRequest(job_id=job_id), timeout=10).job
        if job.state in (job_pb2.JOB_STATE_COMPLETED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELLED) or time.time() > deadline:
            break
        time.sleep(0.05)
    out["get"] = {"id": job.id, "state": job_pb2.JobState.Name(job.state), "labels": dict(job.definition.labels),
                  "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in job.result.files]}
    listed = stub.ListJobs(service_pb2.ListJobsRequest(labels={"client": "python"}, page_size=10), timeout=10)
    out["list"] = {"ids": [j.id for j in listed.jobs], "total_size": listed.total_size, "next_page_token": listed.next_page_token}
    kinds = []
    updates = stub.StreamJobUpdates(service_pb2.StreamJobUpdatesRequest(job_ids=[job_id]), timeout=20)
    for update in updates:
        kinds.append({"kind": service_pb2.JobEventKind.Name(update.kind), "job_id": update.job_id, "state": job_pb2.JobState.Name(update.state)})
        if update.kind == service_pb2.JOB_EVENT_KIND_SYNCED:
            updates.cancel()
            break
    out["stream"] = kinds
    try:
        stub.SubmitJob(service_pb2.SubmitJobRequest(definition=job_pb2.JobDefinition(provider="fake")), timeout=10)
        out["bad"] = {"code": "OK", "details": ""}
    except grpc.RpcError as err:
        out["bad"] = {"code": err.code().name, "details": err.details()}
print(json.dumps(out))
`;

/** Why the Python toolchain cannot be used here, or undefined when it can. */
async function pythonUnavailable(): Promise<string | undefined> {
  if (!fs.existsSync(PYTHON)) return `${PYTHON} not found (install python3, python3-grpcio and python3-grpc-tools)`;
  try {
    await run(PYTHON, ["-c", "import grpc, grpc_tools.protoc"], { timeout: 30_000 });
    return undefined;
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim().split("\n").at(-1) ?? String(err);
    return `${PYTHON} cannot import grpc / grpc_tools (apt-get install python3-grpcio python3-grpc-tools): ${stderr}`;
  }
}

/** Generates the Python stubs into `dir` with the protoc that python3-grpc-tools bundles (3.5 on Debian: the protos must stay compatible with it). */
async function generateStubs(dir: string): Promise<void> {
  const protoDir = path.join(ROOT, "proto");
  await run(PYTHON, ["-m", "grpc_tools.protoc", `-I${protoDir}`, `--python_out=${dir}`, `--grpc_python_out=${dir}`, ...PROTOS.map((p) => path.join(protoDir, p))], { timeout: 60_000 });
}

describe("interop with Python grpcio (C core)", () => {
  let d: DaemonProcess | undefined;
  let dir = "";
  after(async () => {
    if (d) assert.equal(await d.stop(), 0, "daemon exit code");
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test("SubmitJob, GetJob, ListJobs, StreamJobUpdates to SYNCED and INVALID_ARGUMENT from a Python client", async (t) => {
    const unavailable = await pythonUnavailable();
    if (unavailable) {
      console.log(`skipping the Python interop test: ${unavailable}`);
      t.skip(unavailable);
      return;
    }
    dir = tempDir("python");
    await generateStubs(dir);
    assert.ok(fs.existsSync(path.join(dir, "hypervisord/v1/service_pb2_grpc.py")), "stubs generated");
    fs.writeFileSync(path.join(dir, "client.py"), SCRIPT);

    d = await spawnDaemon();
    const { stdout, stderr } = await run(PYTHON, [path.join(dir, "client.py"), d.grpcAddress], { cwd: dir, timeout: 90_000 })
      .catch((err: { stdout?: string; stderr?: string; message: string }) => assert.fail(`python client failed: ${err.message}\n${err.stdout}\n${err.stderr}`));
    let out: Record<string, any>;
    try {
      out = JSON.parse(stdout.trim().split("\n").at(-1)!) as Record<string, any>;
    } catch {
      assert.fail(`python printed no JSON:\n${stdout}\n${stderr}`);
    }

    assert.equal(out.submit.created, true);
    assert.match(out.submit.id, /^[0-9a-f-]{36}$/);
    assert.ok(["JOB_STATE_QUEUED", "JOB_STATE_RUNNING"].includes(out.submit.state), out.submit.state);
    assert.equal(out.submit.provider, "fake");
    assert.equal(out.submit.parallel_downloads, 4, "defaults applied");

    assert.equal(out.get.id, out.submit.id);
    assert.equal(out.get.state, "JOB_STATE_COMPLETED");
    assert.deepEqual(out.get.labels, { client: "python" });
    assert.equal(out.get.files.length, 1);
    assert.equal(out.get.files[0].size, 2000);
    assert.match(out.get.files[0].sha256, /^[0-9a-f]{64}$/);

    assert.deepEqual(out.list, { ids: [out.submit.id], total_size: 1, next_page_token: "" });

    assert.deepEqual(out.stream, [
      { kind: "JOB_EVENT_KIND_SNAPSHOT", job_id: out.submit.id, state: "JOB_STATE_COMPLETED" },
      { kind: "JOB_EVENT_KIND_SYNCED", job_id: "", state: "JOB_STATE_UNSPECIFIED" },
    ]);

    assert.equal(out.bad.code, "INVALID_ARGUMENT");
    assert.match(out.bad.details, /^definition\.vm: required/);

    // The job the Python client created, as the daemon's own client sees it.
    const c = createGrpcJsClient(d.grpcAddress);
    try {
      const job = (await c.unary("getJob", { jobId: out.submit.id })).job!;
      assert.equal(job.state, JobState.COMPLETED);
      assert.equal(job.definition?.labels.client, "python");
      assert.equal(job.result?.files[0]?.sha256, out.get.files[0].sha256);
    } finally {
      c.close();
    }
  });
});
