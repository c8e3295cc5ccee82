// The dashboard's charts, failure groups, jobs table, log lines and attempts (issue 15, "Dashboard").
// First the pure parts without a browser (chart scaling, the timeline, failure grouping, log fields,
// formats), then the real daemon with the fake provider serving the built page to headless Chromium,
// run in a fixed time zone (Europe/Berlin) so that the dates on the page can be checked.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test, type TestContext } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs as tsMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { Browser, Page } from "playwright-core";
import { createHypervisordClient, ExportFormat, JobSchema, JobState, type HypervisordClient, type Job } from "../clients/node/index.ts";
import { byteCeiling, countCeiling, linePath, nearestIndex, niceCeiling } from "../clients/web/dashboard/chart-scale.ts";
import { errorPattern, groupFailures } from "../clients/web/dashboard/failure-groups.ts";
import { createDateFormat, formatPercent, formatRate } from "../clients/web/dashboard/format.ts";
import { averageRate, jobDuration, jobFiles, jobFormat } from "../clients/web/dashboard/job-facts.ts";
import { formatLogFields, logFields } from "../clients/web/dashboard/log-line.ts";
import { createTimeline } from "../clients/web/dashboard/timeline.ts";
import { buildDashboard, launchChromium, openPage, screenshot } from "./support/browser.ts";
import { spawnDaemon, type DaemonProcess } from "./support/daemon-process.ts";
import { tempDir } from "./support/temp-dir.ts";
import { waitForJobState } from "./support/wait-for-job.ts";

const MiB = 1024 * 1024;
const at = (ms: number) => timestampFromMs(ms);
const timestampMs = (ts: Timestamp | undefined) => (ts ? tsMs(ts) : 0);

describe("dashboard charts and tables: the pure parts", () => {
  test("niceCeiling, byteCeiling, countCeiling: round tops for the value axis", () => {
    assert.deepEqual([0, 0.3, 1, 1.1, 2.2, 3, 7, 10, 11, 4100].map(niceCeiling), [1, 0.5, 1, 2, 2.5, 5, 10, 10, 20, 5000]);
    assert.equal(byteCeiling(0), 1024);
    assert.equal(byteCeiling(37 * MiB), 50 * MiB);
    assert.equal(byteCeiling(900 * 1024), 1000 * 1024, "900 KiB/s reads against 1000 KiB/s");
    assert.equal(byteCeiling(3 * 1024 ** 3), 5 * 1024 ** 3);
    assert.deepEqual([0, 1, 3, 6, 12].map(countCeiling), [1, 1, 5, 10, 20]);
  });

  test("linePath: x by time, y by value; a gap longer than gapMs starts a new segment; samples outside the frame are left out", () => {
    const frame = { from: 0, to: 100, max: 10, width: 1000, height: 200 };
    const points = [{ t: -5, v: 1 }, { t: 0, v: 0 }, { t: 10, v: 5 }, { t: 20, v: 10 }, { t: 60, v: 20 }, { t: 70, v: 0 }, { t: 120, v: 3 }];
    assert.equal(linePath(points, frame, 15), "M0.0,200.0L100.0,100.0L200.0,0.0M600.0,0.0L700.0,200.0");
    assert.equal(linePath([], frame, 15), "");
  });

  test("nearestIndex: the sample nearest in time, -1 when there is none", () => {
    const points = [{ t: 0, v: 0 }, { t: 10, v: 1 }, { t: 20, v: 2 }];
    assert.deepEqual([-50, 4, 6, 10, 14, 16, 99].map((t) => nearestIndex(points, t)), [0, 0, 1, 1, 1, 2, 2]);
    assert.equal(nearestIndex([], 5), -1);
  });

  test("the timeline: one sample per bucket (latest wins), a job's line drops to 0 when it stops, nothing recorded offline, an hour kept", () => {
    const timeline = createTimeline({ bucketMs: 2000, jobBucketMs: 1000, windowMs: 10_000 });
    const job = (id: string, state: JobState, rate: number) => create(JobSchema, { id, state, progress: { bytesPerSecond: rate } });
    const live = (...jobs: Job[]) => ({ status: "live" as const, active: new Map(jobs.map((j) => [j.id, j])) });
    timeline.record(live(job("a", JobState.RUNNING, 5 * MiB), job("b", JobState.RUNNING, 3 * MiB), job("c", JobState.QUEUED, 0)), 1000);
    timeline.record(live(job("a", JobState.RUNNING, 6 * MiB), job("b", JobState.RUNNING, 3 * MiB), job("c", JobState.QUEUED, 0)), 1500);
    assert.deepEqual(timeline.overall(), [{ t: 0, bytesPerSecond: 9 * MiB, running: 2, queued: 1 }], "the later state of the same bucket replaced the first");
    timeline.record(live(job("b", JobState.RUNNING, 4 * MiB), job("c", JobState.RUNNING, 1 * MiB)), 2100);
    assert.deepEqual(timeline.overall().map((s) => [s.t, s.running, s.queued]), [[0, 2, 1], [2000, 2, 0]]);
    assert.deepEqual(timeline.job("a"), [{ t: 1000, v: 6 * MiB }, { t: 2000, v: 0 }], "a ended: its line drops to 0");
    assert.deepEqual(timeline.job("c"), [{ t: 2000, v: 1 * MiB }]);
    const version = timeline.version();
    timeline.record({ status: "reconnecting", active: new Map() }, 4000);
    assert.equal(timeline.version(), version, "offline: the stale active jobs are not drawn");
    timeline.record(live(), 13_000);
    assert.deepEqual(timeline.overall().map((s) => s.t), [2000, 12_000], "samples older than the window (10 s here) are dropped");
    assert.deepEqual(timeline.job("nope"), []);

    // A retry: running, back to the queue and running again within a second; the series stays in time order.
    timeline.record(live(job("r", JobState.RUNNING, 2 * MiB)), 20_100);
    timeline.record(live(job("r", JobState.QUEUED, 0)), 20_400);
    timeline.record(live(job("r", JobState.RUNNING, 3 * MiB)), 20_900);
    timeline.record(live(job("r", JobState.RUNNING, 4 * MiB)), 21_200);
    timeline.record(live(job("r", JobState.RUNNING, 5 * MiB)), 20_000); // the clock stepped back
    assert.deepEqual(timeline.job("r"), [{ t: 20_000, v: 3 * MiB }, { t: 21_000, v: 5 * MiB }]);
  });

  test("failures: grouped by code and message pattern, counted, newest group first with its latest job", () => {
    assert.equal(errorPattern('fake failure 2 of 3'), "fake failure # of #");
    assert.equal(errorPattern('VM "/DC0/vm/web-01" not found (job 01JD8Z3K5W2Q9R7T6Y4X1V0B3N)'), "VM “…” not found (job …)");
    assert.equal(errorPattern("downloading disk-2.vmdk from esx-01: ECONNRESET after 512 MiB"), "downloading disk-#.vmdk from esx-#: ECONNRESET after # MiB");
    const failed = (id: string, code: string, message: string, endMs: number) =>
      create(JobSchema, { id, state: JobState.FAILED, error: { code, message }, endTime: at(endMs), definition: { name: id } });
    const groups = groupFailures([
      failed("j5", "NOT_FOUND", 'VM "b" not found', 5000),
      failed("j4", "UNAVAILABLE", "fake failure 3 of 3", 4000),
      failed("j3", "NOT_FOUND", 'VM "a" not found', 3000),
      failed("j2", "UNAVAILABLE", "fake failure 1 of 1", 6000),
      failed("j1", "INTERNAL", "fake failure 1 of 1", 1000),
    ]);
    assert.deepEqual(groups.map((g) => [g.code, g.count, g.latest.id, g.message, g.lastSeen?.getTime()]), [
      ["UNAVAILABLE", 2, "j2", "fake failure 1 of 1", 6000],
      ["NOT_FOUND", 2, "j5", 'VM "b" not found', 5000],
      ["INTERNAL", 1, "j1", "fake failure 1 of 1", 1000],
    ]);
    assert.deepEqual(groupFailures([create(JobSchema, { id: "x", state: JobState.FAILED })]).map((g) => [g.code, g.count]), [["UNKNOWN", 1]]);
  });

  test("log fields: key=value, nested objects flattened, fractions rounded, strings quoted only when needed", () => {
    assert.deepEqual(logFields(""), []);
    assert.deepEqual(logFields("{}"), []);
    assert.equal(
      formatLogFields(JSON.stringify({ file: "web-disk-1.img", bytes: 4194304, rate: 12.345678, err: { code: "ECONNRESET", retry: true }, note: "two words", empty: "", none: null, list: [1, 2] })),
      'file=web-disk-1.img bytes=4194304 rate=12.35 err.code=ECONNRESET err.retry=true note="two words" empty="" none=null list=[1,2]',
    );
    assert.deepEqual(logFields("not json"), [["fields", "not json"]]);
  });

  test("formats: job format in one word, rates with one decimal, whole percents, dates with their zone", () => {
    assert.equal(jobFormat(create(JobSchema, { definition: { format: ExportFormat.OVA, compress: true, convertTo: "qcow2" } }).definition), "ova+gz+qcow2");
    assert.equal(jobFormat(create(JobSchema, { definition: { format: ExportFormat.OVF } }).definition), "ovf");
    assert.equal(jobFormat(create(JobSchema, { definition: { format: ExportFormat.OVF, convertTo: "raw" } }).definition), "ovf+raw");
    assert.equal(formatRate(12.345 * MiB), "12.3 MiB/s");
    assert.equal(formatRate(4 * MiB), "4.0 MiB/s");
    assert.equal(formatRate(512), "512 B/s");
    assert.equal(formatRate(0), "–");
    assert.deepEqual([0, 9.95, 42.7, 99.6, 100, 130].map(formatPercent), ["0%", "9%", "42%", "99%", "100%", "100%"]);
    const winter = Date.UTC(2026, 11, 2, 12, 46, 21);
    assert.equal(createDateFormat("en-GB", "Europe/Berlin").format(winter), "02/12/2026, 13:46:21 CET");
    assert.equal(createDateFormat("en-GB", "UTC").format(winter), "02/12/2026, 12:46:21 UTC");
  });

  test("jobDuration sums every attempt; jobFiles counts a completed job's result; averageRate from the result", () => {
    const now = 100_000;
    const retried = create(JobSchema, {
      state: JobState.RUNNING,
      startTime: at(90_000),
      durationSeconds: 1,
      attempts: [
        { attempt: 1, startTime: at(10_000), endTime: at(13_000), durationSeconds: 3, outcome: JobState.QUEUED },
        { attempt: 2, startTime: at(20_000), endTime: at(24_500), durationSeconds: 4.5, outcome: JobState.QUEUED },
        { attempt: 3, startTime: at(90_000) },
      ],
    });
    assert.equal(jobDuration(retried, now), 3 + 4.5 + 10, "two ended attempts and the running one up to now");
    assert.equal(jobDuration(create(JobSchema, { durationSeconds: 7.25, startTime: at(0), endTime: at(1000) }), now), 7.25, "the daemon's total when no attempts are listed");
    assert.equal(jobDuration(create(JobSchema, { startTime: at(0), endTime: at(2000) }), now), 2, "an older daemon: the last attempt's start to end");
    assert.equal(jobDuration(create(JobSchema, {}), now), undefined, "never started");

    const converted = create(JobSchema, {
      state: JobState.COMPLETED,
      progress: { filesDone: 0, filesTotal: 1, bytesTotal: 8n * BigInt(MiB) },
      result: { files: [{ path: "vm.ovf" }, { path: "vm-disk1.vmdk" }], convertedDisks: [{ path: "vm-disk1.qcow2", verification: "identical" }], durationSeconds: 2 },
    });
    assert.deepEqual(jobFiles(converted), { done: 3, total: 3 }, "not the progress's 0/1");
    assert.deepEqual(jobFiles(create(JobSchema, { state: JobState.RUNNING, progress: { filesDone: 1, filesTotal: 4 } })), { done: 1, total: 4 });
    assert.equal(jobFiles(create(JobSchema, { state: JobState.QUEUED })), undefined);
    assert.equal(averageRate(converted), 4 * MiB);
    assert.equal(averageRate(create(JobSchema, { state: JobState.FAILED })), undefined);
  });
});

let skipReason: string | undefined;
let browser: Browser | undefined;
let daemon: DaemonProcess | undefined;
let client: HypervisordClient;
let page: Page;
const errors: string[] = [];
/** The page's zone and locale, and the same format in Node to check the dates it shows. */
const ZONE = "Europe/Berlin";
const LOCALE = "en-GB";

/** A slow fake export: `chunks` writes of 64 KiB, `delayMs` apart. */
const slowVm = (name: string, chunks: number, delayMs: number) => `${name}?size=${chunks * 65536}&chunk=65536&delayMs=${delayMs}`;

function skipIfNoBrowser(t: TestContext): boolean {
  if (skipReason) t.skip(skipReason);
  return !!skipReason;
}

function assertNoPageErrors() {
  assert.deepEqual(errors.splice(0), [], "the page logged errors");
}

/** "peak 12.3 MiB/s" of a chart's description, in bytes/s. */
function peakRate(description: string, series: string): number {
  const match = new RegExp(`${series}: latest [^,]+, peak ([\\d.]+) (B|KiB|MiB|GiB)/s`).exec(description);
  assert.ok(match, `no peak rate of "${series}" in: ${description}`);
  return Number(match[1]) * 1024 ** ["B", "KiB", "MiB", "GiB"].indexOf(match[2]!);
}

async function chartOf(name: string) {
  const svg = page.getByRole("img", { name, exact: true });
  await svg.waitFor();
  return {
    svg,
    samples: async (tone: string) => Number(await svg.locator(`path.chart-${tone}`).getAttribute("data-samples")),
    description: async () => (await svg.locator("desc").textContent()) ?? "",
  };
}

describe("dashboard charts and tables in Chromium", () => {
  before(async () => {
    buildDashboard();
    const launched = await launchChromium();
    if (!launched.browser) {
      skipReason = launched.reason;
      console.log(`skipping the dashboard chart tests: ${skipReason}`);
      return;
    }
    browser = launched.browser;
    const config = path.join(tempDir("dashboard-charts"), "hypervisord.yaml");
    // Two jobs at once (so that a third one queues), and quick retries for the attempts table.
    fs.writeFileSync(config, "jobs:\n  max_concurrent: 2\n  retry_initial_backoff: 300ms\n");
    daemon = await spawnDaemon({ args: ["--config", config] });
    client = createHypervisordClient({ url: daemon.httpUrl });
    page = await openPage(browser, errors, { timezoneId: ZONE, locale: LOCALE });
  });

  after(async () => {
    await browser?.close();
    client?.close();
    await daemon?.stop();
  });

  test("overview: the last hour's throughput and queue are drawn from the live stream, and read on hover or with the keys", async (t) => {
    if (skipIfNoBrowser(t)) return;
    await page.goto(daemon!.httpUrl);
    await page.getByRole("status").filter({ hasText: "live" }).waitFor();
    const throughput = await chartOf("Throughput");
    const queue = await chartOf("Queue");
    const figure = page.locator("figure.chart").first();
    const boxBefore = await figure.boundingBox();

    const submitted = await client.submitJobs({ definitions: [1, 2, 3, 4].map((i) => ({ provider: "fake", name: `chart-${i}`, vm: slowVm(`chart-${i}`, 40, 50), outputDir: "charts" })) });
    for (const r of submitted.results) await waitForJobState(client, r.job!.id, JobState.COMPLETED);
    await page.waitForTimeout(2500); // one more tick: the line comes back to 0 after the last job

    assert.ok(await throughput.samples("rate") >= 3, `throughput samples drawn: ${await throughput.samples("rate")}`);
    const rateText = await throughput.description();
    assert.ok(peakRate(rateText, "all running jobs") > 100 * 1024, `a peak above 100 KiB/s: ${rateText}`);
    assert.match(rateText, /all running jobs: latest 0 B\/s/, "nothing runs any more");
    const queueText = await queue.description();
    assert.match(queueText, /running: latest 0, peak 2;/, "two ran at once (max_concurrent 2)");
    assert.match(queueText, /queued: latest 0, peak [12]\./, "the other two waited");
    const path = (await throughput.svg.locator("path.chart-rate").getAttribute("d")) ?? "";
    assert.match(path, /^M[\d.]+,[\d.]+(L[\d.]+,[\d.]+)+/, "a line through the samples");

    // Hover near the right end: the legend shows the time and value under the pointer, in the same box.
    const legend = page.locator(".chart-legend").first();
    assert.equal(await legend.locator(".chart-when").textContent(), "latest");
    const plot = page.getByRole("group", { name: /^Throughput: arrow keys/ });
    const box = (await plot.boundingBox())!;
    await page.mouse.move(box.x + box.width * 0.995, box.y + box.height / 2);
    await legend.locator(".chart-when", { hasText: /^\d\d:\d\d:\d\d$/ }).waitFor();
    assert.equal(await throughput.svg.locator("line.chart-cursor").count(), 1, "a cursor marks the sample");
    assert.deepEqual(await figure.boundingBox(), boxBefore, "no layout jump: the chart keeps its box when values arrive and on hover");
    await screenshot(page, "charts-01-overview-hover");
    await page.mouse.move(0, 0);
    await legend.locator(".chart-when", { hasText: "latest" }).waitFor();

    // The keyboard reads the samples one by one: End is the latest, Left the one before.
    await plot.focus();
    await page.keyboard.press("End");
    const latest = await legend.locator(".chart-when").textContent();
    assert.match(latest ?? "", /^\d\d:\d\d:\d\d$/);
    const valueAtEnd = await legend.locator(".chart-value strong").textContent();
    assert.equal(valueAtEnd, "0 B/s");
    let moved = false;
    for (let i = 0; i < 30 && !moved; i++) {
      await page.keyboard.press("ArrowLeft");
      moved = (await legend.locator(".chart-value strong").textContent()) !== "0 B/s";
    }
    assert.ok(moved, "going back over the samples reaches one where jobs ran");
    await page.keyboard.press("Escape");
    await legend.locator(".chart-when", { hasText: "latest" }).waitFor();
    assertNoPageErrors();
  });

  test("overview: three identical failures are one row counting 3, with the last seen time and a link to the latest", async (t) => {
    if (skipIfNoBrowser(t)) return;
    const ids: string[] = [];
    for (const i of [1, 2, 3]) {
      const { job } = await client.submitJob({ definition: { provider: "fake", name: `broken-${i}`, vm: `broken-${i}?failTimes=1&failCode=NOT_FOUND`, outputDir: "charts" } });
      ids.push(job!.id);
    }
    const failed = await Promise.all(ids.map((id) => waitForJobState(client, id, JobState.FAILED)));
    const latest = failed.reduce((a, b) => (timestampMs(b.endTime) >= timestampMs(a.endTime) ? b : a));
    await page.goto(daemon!.httpUrl);
    const table = page.getByRole("region", { name: "Recent failures" }).getByRole("table", { name: "Failures by error" });
    const row = table.getByRole("row", { name: /NOT_FOUND: fake failure 1 of 1/ });
    await row.waitFor();
    assert.equal(await table.locator("tbody tr").count(), 1, "one group, not three boxes");
    const cells = await row.locator("td").allTextContents();
    assert.equal(cells[1], "3");
    assert.equal(cells[2], createDateFormat(LOCALE, ZONE).format(timestampMs(latest.endTime)), "last seen in the page's zone");
    assert.equal(await row.getByRole("link").getAttribute("href"), `#/jobs/${latest.id}`);
    assert.equal(cells[3], latest.definition!.name);
    await screenshot(page, "charts-02-failures-grouped");

    // Another one while the page is open: the daemon's failed count moves, the group counts 4 and links to it.
    const fourth = (await client.submitJob({ definition: { provider: "fake", name: "broken-4", vm: "broken-4?failTimes=1&failCode=NOT_FOUND", outputDir: "charts" } })).job!;
    await waitForJobState(client, fourth.id, JobState.FAILED);
    await row.locator("td").nth(1).filter({ hasText: /^4$/ }).waitFor();
    assert.equal(await row.getByRole("link").getAttribute("href"), `#/jobs/${fourth.id}`);
    assertNoPageErrors();
  });

  test("jobs table: state, error code, format and duration columns, one name column, dates with the time zone", async (t) => {
    if (skipIfNoBrowser(t)) return;
    const packed = (await client.submitJob({ definition: { provider: "fake", name: "packed", vm: "packed?size=65536", outputDir: "charts", format: ExportFormat.OVA, compress: true } })).job!;
    const unnamed = (await client.submitJob({ definition: { provider: "fake", vm: "unnamed?size=4096", outputDir: "charts" } })).job!;
    const done = await waitForJobState(client, packed.id, JobState.COMPLETED);
    await waitForJobState(client, unnamed.id, JobState.COMPLETED);
    await page.goto(`${daemon!.httpUrl}/#/jobs`);
    const table = page.getByRole("table", { name: "Jobs" });
    await table.getByRole("row", { name: /packed/ }).waitFor();
    assert.deepEqual(await table.locator("thead th").allTextContents(), ["Job", "State", "Error", "Format", "Progress", "Created", "Duration", "Provider", "Labels"]);

    const cells = await table.getByRole("row", { name: /packed/ }).locator("td").allTextContents();
    assert.equal(cells[0], "packedpacked?size=65536", "the name, and the VM under it since it says more");
    assert.equal(cells[1], "completed");
    assert.equal(cells[2], "–");
    assert.equal(cells[3], "ova+gz");
    assert.match(cells[4]!, /^100%$/);
    assert.equal(cells[5], createDateFormat(LOCALE, ZONE).format(timestampMs(done.createTime)));
    assert.match(cells[5]!, /\d\d:\d\d:\d\d (CES?T|GMT\+[12])$/, "a time zone is named");
    assert.match(cells[6]!, /^\d+ (ms|s)$/);
    assert.equal(cells[7], "fake");

    const unnamedRow = table.locator("tr", { has: page.locator(`a[href="#/jobs/${unnamed.id}"]`) });
    assert.equal(await unnamedRow.locator("td").first().textContent(), "unnamed?size=4096", "no name: the VM once, not twice");
    const brokenRow = table.getByRole("row", { name: /broken-3/ });
    assert.equal(await brokenRow.locator("td").nth(2).textContent(), "NOT_FOUND");
    assert.equal(await brokenRow.locator("td").nth(2).locator("[title]").getAttribute("title"), "fake failure 1 of 1");
    await screenshot(page, "charts-03-jobs-table");
    assertNoPageErrors();
  });

  test("job page: its throughput over time, files from the result, readable log lines, attempts and the total duration", async (t) => {
    if (skipIfNoBrowser(t)) return;
    const { job } = await client.submitJob({ definition: { provider: "fake", name: "watched", vm: slowVm("watched", 48, 50), outputDir: "charts" } });
    await page.goto(`${daemon!.httpUrl}/#/jobs/${job!.id}`);
    await page.getByRole("heading", { name: "watched" }).waitFor();
    await page.locator(".page-head .badge", { hasText: "completed" }).waitFor({ timeout: 30_000 });
    const chart = await chartOf("Throughput of watched");
    assert.ok(await chart.samples("rate") >= 2, `samples of the job drawn: ${await chart.samples("rate")}`);
    assert.ok(peakRate(await chart.description(), "this job") > 100 * 1024, await chart.description());
    await page.getByText(/^Average over the export: [\d.]+ (KiB|MiB)\/s$/).waitFor();
    await page.getByText("files 1/1", { exact: true }).waitFor();

    const log = page.getByLabel("Job log");
    const line = log.locator(".log-line", { hasText: "fake disk written" });
    await line.waitFor();
    assert.match((await line.textContent())!, /^\d\d:\d\d:\d\d INFO\s+fake disk written( \S+=\S+)* file=watched-disk-1\.img bytes=3145728/);
    assert.doesNotMatch((await log.textContent())!, /[{}]/, "no raw JSON in the log");

    const attempts = page.getByRole("table", { name: "Attempts" });
    await attempts.waitFor();
    const cells = await attempts.locator("tbody tr td").allTextContents();
    assert.equal(cells[0], "1");
    assert.equal(cells[4], "completed");
    await screenshot(page, "charts-04-job-page");
    assertNoPageErrors();
  });

  test("job page of a retried job: one row per attempt with its outcome and reason, the duration of both", async (t) => {
    if (skipIfNoBrowser(t)) return;
    const { job } = await client.submitJob({ definition: { provider: "fake", name: "retried", vm: "retried?size=786432&chunk=65536&delayMs=250&failTimes=1&failCode=UNAVAILABLE&failAfter=131072", outputDir: "charts" } });
    await page.goto(`${daemon!.httpUrl}/#/jobs/${job!.id}`);
    const done = await waitForJobState(client, job!.id, JobState.COMPLETED);
    assert.equal(done.attempts.length, 2, "the daemon lists both attempts");
    await page.locator(".page-head .badge", { hasText: "completed" }).waitFor();
    // Its throughput line runs left to right through both attempts (the retry does not send it back in time).
    // The second attempt takes about 3 s (12 chunks, 250 ms each), so the page samples it more than once even on a loaded machine.
    const line = (await (await chartOf("Throughput of retried")).svg.locator("path.chart-rate").getAttribute("d")) ?? "";
    const xs = [...line.matchAll(/[ML]([\d.]+),/g)].map((m) => Number(m[1]));
    assert.ok(xs.length >= 2, `samples drawn: ${line}`);
    assert.deepEqual(xs, [...xs].sort((a, b) => a - b), `x only grows: ${line}`);
    const attempts = page.getByRole("table", { name: "Attempts" });
    await attempts.waitFor();
    const rows = await attempts.locator("tbody tr").all();
    assert.equal(rows.length, 2);
    const first = await rows[0]!.locator("td").allTextContents();
    const second = await rows[1]!.locator("td").allTextContents();
    assert.equal(first[0], "1");
    assert.equal(first[4], "requeued");
    assert.match(first[5]!, /fake failure 1 of 1/);
    assert.equal(first[1], createDateFormat(LOCALE, ZONE).format(timestampMs(done.attempts[0]!.startTime)));
    assert.equal(second[4], "completed");
    const duration = page.locator(".key-values > div", { has: page.locator("dt", { hasText: /^duration$/ }) }).locator("dd");
    assert.match((await duration.textContent())!, / over 2 attempts$/);
    assert.ok(done.durationSeconds >= done.attempts[0]!.durationSeconds + done.attempts[1]!.durationSeconds - 0.01, "the total counts both attempts");
    await screenshot(page, "charts-05-attempts");
    assertNoPageErrors();
  });
});
