// The dashboard's pure parts, without a browser: which copy of a job is newer, labels, error text, sizes.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { JobSchema, JobState } from "../clients/web/index.ts";
import { describeError, formatBytes, formatDuration, isNetworkError, parseLabels } from "../clients/web/dashboard/format.ts";
import { freshestJob } from "../clients/web/dashboard/live.ts";

const job = (state: JobState, percent: number) => create(JobSchema, { id: "j1", state, progress: { percent }, definition: { name: "web" } });

describe("dashboard logic", () => {
  test("freshestJob: the stream's progress wins while running; an ended job is final on either side", () => {
    assert.equal(freshestJob(job(JobState.RUNNING, 10), job(JobState.RUNNING, 40))?.progress?.percent, 40);
    assert.equal(freshestJob(job(JobState.RUNNING, 10), job(JobState.RUNNING, 40))?.definition?.name, "web", "the loaded fields stay");
    assert.equal(freshestJob(job(JobState.RUNNING, 10), job(JobState.COMPLETED, 100))?.state, JobState.COMPLETED);
    assert.equal(freshestJob(job(JobState.CANCELLED, 30), job(JobState.RUNNING, 35))?.state, JobState.CANCELLED, "a lagging stream does not revive an ended job");
    assert.equal(freshestJob(undefined, job(JobState.QUEUED, 0))?.state, JobState.QUEUED);
    assert.equal(freshestJob(job(JobState.QUEUED, 0), undefined)?.state, JobState.QUEUED);
  });

  test("parseLabels: commas or new lines, trimmed; a bad entry is named with its field", () => {
    assert.deepEqual(parseLabels(" team=web , tier=1\nenv = prod ", "labels"), { team: "web", tier: "1", env: "prod" });
    assert.deepEqual(parseLabels("", "labels"), {});
    assert.deepEqual(parseLabels("url=a=b", "labels"), { url: "a=b" });
    assert.throws(() => parseLabels("team", "labels"), /^Error: labels: "team" is not key=value$/);
    assert.throws(() => parseLabels("=web", "tags"), /tags: "=web"/);
  });

  test("describeError: the gRPC code name and the daemon's message; fetch failures read as unreachable", () => {
    assert.equal(describeError(new ConnectError("definition.vm: must not be empty", Code.InvalidArgument)), "INVALID_ARGUMENT: definition.vm: must not be empty");
    assert.equal(describeError(new ConnectError("x", Code.FailedPrecondition)), "FAILED_PRECONDITION: x");
    const network = new ConnectError("Failed to fetch", Code.Unknown, undefined, undefined, new TypeError("Failed to fetch"));
    assert.equal(isNetworkError(network), true);
    assert.equal(describeError(network), "UNAVAILABLE: the daemon cannot be reached (network error)");
    assert.equal(isNetworkError(new ConnectError("boom", Code.Unknown)), false);
    assert.equal(describeError(new Error("labels: bad")), "labels: bad");
  });

  test("formatBytes and formatDuration", () => {
    assert.equal(formatBytes(0), "0 B");
    assert.equal(formatBytes(1023), "1023 B");
    assert.equal(formatBytes(4 * 1024 * 1024), "4.00 MiB");
    assert.equal(formatBytes(250n * 1024n * 1024n), "250.0 MiB");
    assert.equal(formatBytes(16n * 1024n ** 3n), "16.0 GiB");
    assert.equal(formatDuration(0.022), "22 ms");
    assert.equal(formatDuration(110), "1 min 50 s");
    assert.equal(formatDuration(7260), "2 h 1 min");
    assert.equal(formatDuration(undefined), "–");
  });
});
