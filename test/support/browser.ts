// Real headless Chromium (Debian's `chromium` package) driven by playwright-core, for the dashboard tests.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { chromium, type Browser, type BrowserContextOptions, type Page } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const ROOT = path.resolve(import.meta.dirname, "../..");
/** Where the screenshots go (looked at by people, kept by CI as test output). */
export const SHOTS_DIR = path.join(ROOT, ".test-output", "dashboard");

/** Chromium, or the reason it cannot run here. Flags as this machine needs them: no sandbox as root, no network of its own. */
export async function launchChromium(): Promise<{ browser?: Browser; reason?: string }> {
  if (!fs.existsSync(CHROMIUM)) return { reason: `${CHROMIUM} not found (install the Debian package chromium)` };
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
  });
  return { browser };
}

/** A page that fails the test on any uncaught error or console error of the dashboard; `options` e.g. fix its time zone and locale. */
export async function openPage(browser: Browser, errors: string[], options: BrowserContextOptions = {}): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1366, height: 860 }, ...options });
  const page = await context.newPage();
  page.on("pageerror", (err) => errors.push(`pageerror: ${err.message}`));
  page.on("console", (message) => {
    // Failed fetches while the daemon is deliberately down are expected; anything else is a defect.
    if (message.type() === "error" && !/Failed to load resource|ERR_CONNECTION_REFUSED|ERR_EMPTY_RESPONSE/.test(message.text())) errors.push(`console: ${message.text()}`);
  });
  return page;
}

export async function screenshot(page: Page, name: string): Promise<string> {
  fs.mkdirSync(SHOTS_DIR, { recursive: true });
  const file = path.join(SHOTS_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/** Builds the dashboard (a no-op when it is up to date), so the test file also runs on its own. */
export function buildDashboard(): void {
  execFileSync(process.execPath, ["--import", "tsx", path.join(ROOT, "clients/web/build.ts")], { cwd: ROOT, stdio: "pipe" });
}
