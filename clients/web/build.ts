/**
 * `npm run build`: builds the dashboard into clients/web/dist, which the daemon serves at `/`.
 * It runs before every `npm start` and `npm test`, so it skips the build when nothing it reads has
 * changed (a hash of the sources is kept in dist/.build-hash), and it builds into a fresh folder that
 * replaces dist by rename: a daemon starting meanwhile, or a second build, never sees a half-written dist.
 * `--force` builds anyway. `--if-possible` (what `npm start` uses) reports a failed build and exits 0:
 * the daemon then starts with the previous build, or says at `/` that there is none; the API is unaffected.
 */
import fs from "node:fs";
import path from "node:path";
import { hashInputs } from "../../scripts/source-hash.ts";

const WEB = import.meta.dirname;
const DIST = path.join(WEB, "dist");
const HASH_FILE = ".build-hash";
/** What the bundle is made of: the app, the client it uses, the generated API, and the tool versions. */
const INPUTS = ["clients/web/dashboard", "clients/web/index.ts", "clients/web/vite.config.ts", "clients/core", "gen", "package-lock.json"];

function sourceHash(): string {
  return hashInputs(INPUTS);
}

function builtHash(): string | undefined {
  try {
    return fs.readFileSync(path.join(DIST, HASH_FILE), "utf8").trim();
  } catch {
    return undefined; // no dist yet
  }
}

async function buildInto(hash: string): Promise<void> {
  const started = performance.now();
  const staging = `${DIST}.tmp-${process.pid}`;
  const old = `${DIST}.old-${process.pid}`;
  try {
    // Imported here: a production install (npm ci --omit=dev) has no vite, and then only building fails.
    const { build } = await import("vite");
    await build({ configFile: path.join(WEB, "vite.config.ts"), build: { outDir: staging, emptyOutDir: true } });
    fs.writeFileSync(path.join(staging, HASH_FILE), `${hash}\n`);
    if (fs.existsSync(DIST)) fs.renameSync(DIST, old);
    try {
      fs.renameSync(staging, DIST);
    } catch (err) {
      // A build running at the same time put its dist in place first: it is built from the same sources.
      if (!["ENOTEMPTY", "EEXIST"].includes((err as NodeJS.ErrnoException).code ?? "")) throw err;
    }
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
    fs.rmSync(old, { recursive: true, force: true });
  }
  console.log(`dashboard built into ${path.relative(process.cwd(), DIST)} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

const force = process.argv.includes("--force");
const hash = sourceHash();
if (!force && builtHash() === hash && fs.existsSync(path.join(DIST, "index.html"))) {
  console.log(`dashboard is up to date in ${path.relative(process.cwd(), DIST) || "."}`);
} else {
  try {
    await buildInto(hash);
  } catch (err) {
    if (!process.argv.includes("--if-possible")) throw err;
    const previous = fs.existsSync(path.join(DIST, "index.html")) ? "the previous build is served" : "there is no build: / explains how to make one";
    console.error(`dashboard build failed (${previous}; the API is unaffected): ${(err as Error).message}`);
  }
}
