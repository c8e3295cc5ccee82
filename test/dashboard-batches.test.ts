// The dashboard's batches in real headless Chromium: the real daemon (fake provider's fleet folders,
// test/support/fake-provider.ts) serves the built page; batches are submitted over the API and
// followed on the Batches view and the batch page, live over the page's one update stream.
// Screenshots under .test-output/dashboard/ (batches-*.png). The pure parts are checked first, without a browser.
import assert from "node:assert/strict";
import { after, before, describe, test, type TestContext } from "node:test";
import { create } from "@bufbuild/protobuf";
import type { Browser, Locator, Page } from "playwright-core";
import { BatchSchema, BatchState, createHypervisordClient, JobSchema, JobState, type Batch, type HypervisordClient } from "../clients/node/index.ts";
import { batchPercent, freshestBatch, vmRows } from "../clients/web/dashboard/batch-view.ts";
import { buildDashboard, launchChromium, openPage, screenshot } from "./support/browser.ts";
import { spawnDaemon, type DaemonProcess } from "./support/daemon-process.ts";

const SLOW = ["slow-01", "slow-02", "slow-03", "slow-04", "slow-05", "slow-06"];
let skipReason: string | undefined;
let browser: Browser | undefined;
let daemon: DaemonProcess | undefined;
let client: HypervisordClient | undefined;
let page: Page;
const errors: string[] = [];

function skipIfNoBrowser(t: TestContext): boolean {
  if (skipReason) t.skip(skipReason);
  return !!skipReason;
}

function assertNoPageErrors() {
  assert.deepEqual(errors.splice(0), [], "the page logged errors");
}

async function waitUntil(check: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function barValue(bar: Locator): Promise<number> {
  return Number(await bar.getAttribute("aria-valuenow"));
}

async function submitBatch(folder: string, extra: { maxParallel?: number; name?: string } = {}): Promise<Batch> {
  const response = await client!.submitJob({ definition: { provider: "fake", vmSelector: { folder }, outputDir: "batches", ...extra } });
  assert.ok(response.batch, "a selector makes a batch");
  return response.batch;
}

async function waitForBatchState(batchId: string, state: BatchState, timeoutMs = 30_000): Promise<Batch> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { batch } = await client!.getBatch({ batchId });
    if (batch!.state === state) return batch!;
    if (Date.now() > deadline) throw new Error(`batch ${batchId} is ${BatchState[batch!.state]}, not ${BatchState[state]}, after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("batches in the dashboard: the pure parts", () => {
  const child = (jobId: string, state: JobState, done = 0n, total = 100n) => ({ jobId, vm: `/DC1/vm/x/${jobId}`, vmName: jobId, state, bytesDone: done, bytesTotal: total });
  const batch = (state: BatchState, completed: number, bytesDone: bigint, jobs = [child("a", JobState.RUNNING)]) =>
    create(BatchSchema, { id: "b", state, counts: { completed, total: jobs.length }, bytesDone, jobs });

  test("freshestBatch: an ended batch is final on either side; else more ended children, then more bytes, is newer", () => {
    assert.equal(freshestBatch(batch(BatchState.RUNNING, 1, 10n), batch(BatchState.RUNNING, 2, 5n))?.counts?.completed, 2);
    assert.equal(freshestBatch(batch(BatchState.RUNNING, 2, 10n), batch(BatchState.RUNNING, 1, 50n))?.counts?.completed, 2, "a lagging live copy loses");
    assert.equal(freshestBatch(batch(BatchState.RUNNING, 1, 10n), batch(BatchState.RUNNING, 1, 50n))?.bytesDone, 50n);
    assert.equal(freshestBatch(batch(BatchState.CANCELLED, 0, 0n), batch(BatchState.RUNNING, 3, 90n))?.state, BatchState.CANCELLED);
    assert.equal(freshestBatch(batch(BatchState.RUNNING, 3, 90n), batch(BatchState.COMPLETED, 0, 0n))?.state, BatchState.COMPLETED);
    assert.equal(freshestBatch(undefined, batch(BatchState.RUNNING, 0, 0n))?.id, "b");
  });

  test("vmRows: the live job's state and progress when further along; an ended child is final; the total counts ended VMs as done", () => {
    const jobs = [child("a", JobState.QUEUED), child("b", JobState.RUNNING, 20n), child("c", JobState.COMPLETED, 100n), child("d", JobState.FAILED, 30n)];
    const live = new Map([
      ["a", create(JobSchema, { id: "a", state: JobState.RUNNING, progress: { percent: 40 } })],
      ["b", create(JobSchema, { id: "b", state: JobState.RUNNING, progress: { percent: 60 } })],
      ["d", create(JobSchema, { id: "d", state: JobState.RUNNING, progress: { percent: 35 } })],
    ]);
    const rows = vmRows(batch(BatchState.RUNNING, 1, 0n, jobs), (id) => live.get(id));
    assert.deepEqual(rows.map((r) => [r.name, JobState[r.state], r.percent]), [["a", "RUNNING", 40], ["b", "RUNNING", 60], ["c", "COMPLETED", 100], ["d", "FAILED", 30]]);
    assert.equal(batchPercent(rows), (40 + 60 + 100 + 100) / 4);
    assert.equal(batchPercent([]), 0);
  });
});

describe("batches in the dashboard, in Chromium", () => {
  before(async () => {
    buildDashboard();
    const launched = await launchChromium();
    if (!launched.browser) {
      skipReason = launched.reason;
      console.log(`skipping the dashboard batch tests: ${skipReason}`);
      return;
    }
    browser = launched.browser;
    daemon = await spawnDaemon();
    client = createHypervisordClient({ url: daemon.httpUrl });
    page = await openPage(browser, errors);
  });

  after(async () => {
    await browser?.close();
    client?.close();
    if (daemon) await daemon.stop();
  });

  test("a batch submitted over the API appears in the Batches view live; its page shows every VM, their bars reach completed", async (t) => {
    if (skipIfNoBrowser(t)) return;
    await page.goto(daemon!.httpUrl);
    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Batches" }).click();
    await page.getByRole("heading", { name: "Batches" }).waitFor();
    await page.getByRole("status").filter({ hasText: "live" }).waitFor();
    const list = page.getByRole("table", { name: "Batches" });

    const submitted = await submitBatch("/DC1/vm/slow", { maxParallel: 3, name: "e2e-slow-batch" });
    // No reload: the stream's BATCH_CHANGED brings it.
    const row = list.getByRole("row", { name: /e2e-slow-batch/ });
    await row.waitFor({ timeout: 10_000 });
    await row.locator(".badge", { hasText: "running" }).waitFor();
    const listBar = row.getByRole("progressbar", { name: "Progress of batch e2e-slow-batch" });
    await waitUntil(async () => (await barValue(listBar)) > 0, "the list's bar moves");
    await screenshot(page, "batches-01-list-running");

    await row.getByRole("link", { name: "e2e-slow-batch" }).click();
    await page.waitForURL(new RegExp(`#/batches/${submitted.id}$`));
    await page.getByRole("heading", { name: "e2e-slow-batch" }).waitFor();
    const vms = page.getByRole("table", { name: "VMs of the batch" });
    await waitUntil(async () => (await vms.locator("tbody tr").count()) === 6, "a row per VM");
    assert.deepEqual(await vms.locator("tbody tr td:first-child").allTextContents(), SLOW);
    const total = page.getByRole("progressbar", { name: "Total progress of batch e2e-slow-batch" });
    const seen = new Set<number>();
    await waitUntil(async () => {
      const value = await barValue(total);
      seen.add(value);
      return value > 0 && value < 100;
    }, "the total bar is on its way");
    await page.getByRole("button", { name: "Cancel batch" }).waitFor();
    await screenshot(page, "batches-02-page-running");

    for (const vm of SLOW) {
      const bar = vms.getByRole("progressbar", { name: `Progress of ${vm}` });
      await waitUntil(async () => (await barValue(bar)) === 100, `${vm}'s bar reaches 100`, 40_000);
    }
    await page.locator(".page-head .badge", { hasText: "completed" }).waitFor({ timeout: 10_000 });
    assert.equal(await barValue(total), 100);
    assert.equal(await vms.locator("tbody .badge", { hasText: "completed" }).count(), 6);
    assert.equal(await page.getByRole("button", { name: "Cancel batch" }).count(), 0, "no cancel on an ended batch");
    const counts = page.getByRole("definition").filter({ hasText: /^6$/ });
    assert.ok((await counts.count()) >= 2, "VMs 6 and completed 6");
    await screenshot(page, "batches-03-page-completed");

    // A child's job page links back to its batch.
    const { batch } = await client!.getBatch({ batchId: submitted.id });
    assert.equal(batch!.state, BatchState.COMPLETED);
    await vms.getByRole("link", { name: "Job of slow-04" }).click();
    await page.waitForURL(new RegExp(`#/jobs/${batch!.jobs[3]!.jobId}$`));
    await page.getByRole("link", { name: submitted.id }).click();
    await page.getByRole("heading", { name: "e2e-slow-batch" }).waitFor();
    assertNoPageErrors();
  });

  test("Cancel batch on the batch page cancels the jobs not ended; the batch ends cancelled", async (t) => {
    if (skipIfNoBrowser(t)) return;
    const submitted = await submitBatch("/DC1/vm/slow", { maxParallel: 1, name: "e2e-cancel-batch" });
    await page.goto(`${daemon!.httpUrl}/#/batches/${submitted.id}`);
    await page.getByRole("heading", { name: "e2e-cancel-batch" }).waitFor();
    const vms = page.getByRole("table", { name: "VMs of the batch" });
    await waitUntil(async () => (await barValue(vms.getByRole("progressbar", { name: "Progress of slow-01" }))) > 0, "the first VM is on its way");
    await page.getByRole("button", { name: "Cancel batch" }).click();
    await page.getByRole("group", { name: /Cancel every job of this batch/ }).getByRole("button", { name: "Yes" }).click();
    await page.locator(".page-head .badge", { hasText: "cancelled" }).waitFor({ timeout: 15_000 });
    const batch = await waitForBatchState(submitted.id, BatchState.CANCELLED);
    assert.ok(batch.counts!.cancelled >= 5, JSON.stringify(batch.counts));
    await waitUntil(async () => (await vms.locator("tbody .badge", { hasText: "cancelled" }).count()) === batch.counts!.cancelled, "the rows show the cancelled jobs");
    const { job } = await client!.getJob({ jobId: batch.jobs[5]!.jobId });
    assert.equal(job!.state, JobState.CANCELLED);
    assert.match(job!.error?.message ?? "", /cancelled from the dashboard/);
    assert.equal(await page.getByRole("button", { name: "Cancel batch" }).count(), 0);
    await screenshot(page, "batches-04-cancelled");

    // The Batches view filters by state from the URL.
    await page.goto(`${daemon!.httpUrl}/#/batches?state=cancelled`);
    const list = page.getByRole("table", { name: "Batches" });
    await list.getByRole("row", { name: /e2e-cancel-batch/ }).waitFor();
    assert.equal(await list.getByRole("row", { name: /e2e-slow-batch/ }).count(), 0);
    assert.equal(await page.getByLabel("State").inputValue(), "cancelled");
    assertNoPageErrors();
  });

  test("the export form's \"Several VMs\" submits a selector and lands on the batch page; a failed VM shows its error", async (t) => {
    if (skipIfNoBrowser(t)) return;
    await page.goto(`${daemon!.httpUrl}/#/export`);
    await page.getByRole("heading", { name: "Export & convert" }).waitFor();
    await page.getByLabel("Provider").selectOption("fake");
    await page.getByRole("radio", { name: "Several VMs (a batch: a job per VM)" }).check();
    assert.equal(await page.getByLabel("VM", { exact: true }).count(), 0, "no single VM field in this mode");
    await page.getByLabel("Folder", { exact: true }).fill("/DC1/vm/mixed");
    await page.getByLabel("Name pattern").fill("mixed-0?");
    await page.getByLabel("At most in parallel").fill("2");
    await page.getByLabel("Job name").fill("e2e-form-batch");
    await page.getByLabel("Output directory").fill("batches");
    await screenshot(page, "batches-05-export-form");
    await page.getByRole("button", { name: "Start export" }).click();
    await page.waitForURL(/#\/batches\/[^/?]+$/);
    const batchId = decodeURIComponent(page.url().split("#/batches/")[1]!);
    await page.getByRole("heading", { name: "e2e-form-batch" }).waitFor();
    await page.locator(".page-head .badge", { hasText: "partially-failed" }).waitFor({ timeout: 20_000 });
    const vms = page.getByRole("table", { name: "VMs of the batch" });
    await vms.getByRole("row", { name: /mixed-02/ }).getByText(/INTERNAL: fake failure/).waitFor();
    const { batch } = await client!.getBatch({ batchId });
    assert.equal(batch!.state, BatchState.PARTIALLY_FAILED);
    assert.equal(batch!.maxParallel, 2);
    assert.equal(batch!.definition!.vmSelector!.folder, "/DC1/vm/mixed");
    assert.equal(batch!.definition!.vmSelector!.nameGlob, "mixed-0?");
    assert.deepEqual(batch!.jobs.map((j) => j.vmName), ["mixed-01", "mixed-02", "mixed-03"]);
    await screenshot(page, "batches-06-partially-failed");
    assertNoPageErrors();
  });

  test("accessibility: every control on the batch views has a name", async (t) => {
    if (skipIfNoBrowser(t)) return;
    const unlabelled = `[...document.querySelectorAll("input:not([type=hidden]), select, textarea, button, a, [role=progressbar]")]
      .filter((el) => !(el.labels?.length || el.getAttribute("aria-label") || el.getAttribute("aria-labelledby") || ((el.tagName === "BUTTON" || el.tagName === "A") && el.textContent.trim())))
      .map((el) => el.outerHTML.slice(0, 120))`;
    const { batches } = await client!.listBatches({});
    assert.ok(batches.length >= 2);
    for (const hash of ["#/batches", `#/batches/${batches[0]!.id}`, "#/export"]) {
      await page.goto(`${daemon!.httpUrl}/${hash}`);
      await page.getByRole("status").filter({ hasText: "live" }).waitFor();
      await page.locator("main h1").waitFor();
      if (hash === "#/export") await page.getByRole("radio", { name: /^Several VMs/ }).check();
      else await page.locator("main table tbody tr").first().waitFor();
      assert.deepEqual(await page.evaluate(unlabelled), [], `controls without a name on ${hash}`);
    }
    assertNoPageErrors();
  });
});
