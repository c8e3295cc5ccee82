// The package as a user gets it: `npm pack` (its prepack builds the dashboard and dist/), then
// `npm install -g --prefix TMP` of the tarball, then the installed `hypervisord` and `hyperctl` found on PATH,
// run from another directory: --version and --help, the daemon started on free ports with a temp data dir,
// `hyperctl status` against it, and the packaged Node client ("hypervisord/client") imported by another program.
//
// The install is offline from npm's cache when it can be (`--offline`), else it fetches what the cache lacks
// (`--prefer-offline`); with neither the test skips, saying why. It runs with --ignore-scripts and then copies
// the checkout's compiled better-sqlite3 binary into the installed tree: better-sqlite3 has no prebuilt
// binary here and compiles from source (about 80 s, the same compile `npm ci` did for the checkout), and
// what is under test is the package, not node-gyp. HYPERVISORD_TEST_NATIVE_BUILD=1 installs with the
// install scripts instead, as a user's `npm install -g` does (the compile included).
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import { builtinModules } from "node:module";
import path from "node:path";
import readline from "node:readline";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { tempDir } from "./support/temp-dir.ts";

const ROOT = path.resolve(import.meta.dirname, "..");
const PKG = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as {
  name: string; version: string; dependencies: Record<string, string>; devDependencies: Record<string, string>;
};
const NATIVE_BUILD = process.env.HYPERVISORD_TEST_NATIVE_BUILD === "1";
const run = promisify(execFile);

interface Installed {
  prefix: string;
  /** The installed package's directory (PREFIX/lib/node_modules/hypervisord). */
  dir: string;
  /** PATH with PREFIX/bin first. */
  env: NodeJS.ProcessEnv;
  files: string[];
}

/** `npm pack` into a temp dir; resolves with the tarball and the files npm says it holds. */
async function pack(): Promise<{ tarball: string; files: string[] }> {
  const dest = tempDir("pack");
  const { stdout } = await run("npm", ["pack", "--json", "--pack-destination", dest], { cwd: ROOT, timeout: 300_000, maxBuffer: 64 * 1024 * 1024 });
  // prepack's build scripts print their progress before npm's JSON.
  const report = JSON.parse(stdout.slice(stdout.indexOf("[\n"))) as { filename: string; files: { path: string }[] }[];
  return { tarball: path.join(dest, report[0]!.filename), files: report[0]!.files.map((f) => f.path) };
}

/** `npm install -g --prefix`: offline from the cache first, then allowing the registry for what it lacks; undefined with the reason when neither works. */
async function install(tarball: string, prefix: string): Promise<string | undefined> {
  const scripts = NATIVE_BUILD ? [] : ["--ignore-scripts"];
  const errors: string[] = [];
  for (const mode of ["--offline", "--prefer-offline"]) {
    try {
      await run("npm", ["install", "-g", "--prefix", prefix, mode, ...scripts, "--no-audit", "--no-fund", tarball], { cwd: prefix, timeout: 900_000, maxBuffer: 64 * 1024 * 1024 });
      return undefined;
    } catch (err) {
      errors.push(`${mode}: ${((err as { stderr?: string }).stderr ?? (err as Error).message).trim().split("\n").slice(0, 3).join(" / ")}`);
    }
  }
  return `npm install -g of the tarball failed offline and online (${errors.join("; ")})`;
}

/** Starts the installed daemon on free ports; resolves with it and its HTTP address once it logs "hypervisord ready". */
async function startInstalledDaemon(installed: Installed, dataDir: string): Promise<{ child: ChildProcess; http: string; grpc: string }> {
  const child = spawn("hypervisord", ["--data-dir", dataDir, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"], {
    cwd: dataDir, env: installed.env, stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  try {
    return await new Promise((resolve, reject) => {
      readline.createInterface({ input: child.stdout! }).on("line", (line) => {
        if (!line.includes('"hypervisord ready"')) return;
        const ready = JSON.parse(line) as { http_address: string; grpc_address: string };
        resolve({ child, http: ready.http_address, grpc: ready.grpc_address });
      });
      child.once("exit", (code) => reject(new Error(`the installed daemon exited with ${code} before ready: ${stderr}`)));
    });
  } finally {
    clearTimeout(timer);
  }
}

/** Bare module names the built files import (static, dynamic, and require() of the bundled CommonJS packages), without Node's builtins. */
function bareImports(dir: string): Set<string> {
  const names = new Set<string>();
  for (const file of fs.readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((name) => name.endsWith(".js"))) {
    const text = fs.readFileSync(path.join(dir, file), "utf8");
    // Only what is shaped like a package name (and subpath): `new CopyStoreError("--from", ...)` in the bundle is no import.
    for (const match of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s*|\brequire\s*\(\s*)"((?:@[a-z0-9][\w.-]*\/)?[a-z0-9][\w.:-]*(?:\/[\w./-]*)?)"/g)) {
      const specifier = match[1]!;
      if (specifier.startsWith("node:") || builtinModules.includes(specifier)) continue;
      names.add(specifier.startsWith("@") ? specifier.split("/").slice(0, 2).join("/") : specifier.split("/")[0]!);
    }
  }
  return names;
}

describe("npm pack, npm install -g, and the installed commands", { timeout: 1_200_000 }, () => {
  let installed: Installed | undefined;
  let skipReason: string | undefined;
  const daemons: ChildProcess[] = [];

  before(async () => {
    const { tarball, files } = await pack();
    const prefix = tempDir("prefix");
    skipReason = await install(tarball, prefix);
    if (skipReason) return;
    const dir = path.join(prefix, "lib/node_modules", PKG.name);
    if (!NATIVE_BUILD) {
      const binary = "node_modules/better-sqlite3/build/Release/better_sqlite3.node";
      fs.mkdirSync(path.dirname(path.join(dir, binary)), { recursive: true });
      fs.copyFileSync(path.join(ROOT, binary), path.join(dir, binary));
    }
    // Nothing of the checkout on the way: PATH starts with the prefix's bin, NODE_PATH is unset.
    const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${path.join(prefix, "bin")}${path.delimiter}${process.env.PATH}` };
    delete env.NODE_PATH;
    delete env.NODE_OPTIONS;
    delete env.HYPERVISORD_ADDR;
    delete env.HYPERVISORD_API_KEY;
    installed = { prefix, dir, env, files };
  });

  after(async () => {
    for (const child of daemons) {
      if (child.exitCode !== null || child.signalCode !== null) continue;
      child.kill("SIGTERM");
      await new Promise((resolve) => child.once("exit", resolve));
    }
  });

  const ready = (t: { skip(message: string): void }): Installed | undefined => {
    if (!installed) t.skip(skipReason ?? "the install did not run");
    if (skipReason) console.log(`# skipped: ${skipReason}`);
    return installed;
  };

  test("the tarball holds the built program, the dashboard, proto, deploy and the config example; no sources, tests or node_modules", (t) => {
    const pkg = ready(t);
    if (!pkg) return;
    for (const file of ["bin/hypervisord.js", "bin/hyperctl.js", "dist/hypervisord.js", "dist/hyperctl.js", "clients/web/dist/index.html",
      "dist/clients/node.js", "dist/types/clients/node/index.d.ts",
      "proto/hypervisord/v1/service.proto", "deploy/hypervisord.service", "config.example.yaml", "README.md", "package.json"]) {
      assert.ok(pkg.files.includes(file), `${file} is in the tarball`);
    }
    const strays = pkg.files.filter((file) => /^(src|test|gen|scripts|node_modules)\//.test(file) || (file.endsWith(".ts") && !file.endsWith(".d.ts")));
    assert.deepEqual(strays, [], "no TypeScript sources, tests or node_modules");
  });

  test("the built program imports only the package's dependencies; the install has no build tools", (t) => {
    const pkg = ready(t);
    if (!pkg) return;
    const imported = bareImports(path.join(pkg.dir, "dist"));
    assert.ok(imported.has("better-sqlite3") && imported.has("@connectrpc/connect-node"), `the scan finds the external imports of the daemon and the client (${[...imported].join(", ")})`);
    const undeclared = [...imported].filter((name) => !(name in PKG.dependencies));
    assert.deepEqual(undeclared, [], "every package dist/ imports is a dependency");
    // Some devDependencies come in as dependencies of dependencies (protobufjs needs @types/node): check the build tools.
    const tools = ["tsx", "esbuild", "typescript", "vite"];
    assert.ok(tools.every((name) => name in PKG.devDependencies), "the build tools are devDependencies");
    const present = tools.filter((name) => fs.existsSync(path.join(pkg.dir, "node_modules", name)));
    assert.deepEqual(present, [], "no build tool is installed: the program runs without them");
  });

  test("hypervisord and hyperctl are on PATH: --version and --help", async (t) => {
    const pkg = ready(t);
    if (!pkg) return;
    const cwd = tempDir("elsewhere");
    const version = await run("hypervisord", ["--version"], { cwd, env: pkg.env });
    assert.equal(version.stdout.trim(), `hypervisord ${PKG.version}`);
    const help = await run("hypervisord", ["--help"], { cwd, env: pkg.env });
    assert.match(help.stdout, /usage: hypervisord/);
    assert.match(help.stdout, /--grpc-listen/);
    const ctlVersion = await run("hyperctl", ["--version"], { cwd, env: pkg.env });
    assert.equal(ctlVersion.stdout.trim(), PKG.version);
    const ctlHelp = await run("hyperctl", ["--help"], { cwd, env: pkg.env });
    assert.match(ctlHelp.stdout, /Usage: hyperctl/);
    assert.match(ctlHelp.stdout, /\bstatus\b/);
    assert.equal(fs.realpathSync(path.join(pkg.prefix, "bin/hyperctl")), path.join(pkg.dir, "bin/hyperctl.js"), "the command is the package's bin");
  });

  test("the installed daemon starts on free ports with a temp data dir; the installed hyperctl status reaches it; the dashboard is served", async (t) => {
    const pkg = ready(t);
    if (!pkg) return;
    const dataDir = tempDir("installed-data");
    const daemon = await startInstalledDaemon(pkg, dataDir);
    daemons.push(daemon.child);
    for (const server of [`http://${daemon.http}`, `grpc://${daemon.grpc}`]) {
      const status = await run("hyperctl", ["--server", server, "status"], { cwd: tempDir("elsewhere"), env: pkg.env, timeout: 60_000 });
      assert.match(status.stdout, new RegExp(`Version:\\s+${PKG.version.replaceAll(".", "\\.")}`), `status over ${server}`);
      assert.match(status.stdout, /Lifecycle:\s+running/);
    }
    assert.ok(fs.existsSync(path.join(dataDir, "encryption.key")), "the daemon keeps its state in the data dir it was given");
    // The Node client as a program that depends on the package imports it: "hypervisord/client" (package.json exports).
    const consumer = tempDir("consumer");
    fs.mkdirSync(path.join(consumer, "node_modules"));
    fs.symlinkSync(pkg.dir, path.join(consumer, "node_modules", PKG.name));
    fs.writeFileSync(path.join(consumer, "status.mjs"), [
      'import { createHypervisordClient } from "hypervisord/client";',
      "const client = createHypervisordClient({ url: process.argv[2] });",
      "try { console.log(JSON.stringify({ version: (await client.getStatus({})).version })); } finally { client.close(); }",
    ].join("\n"));
    const viaClient = await run(process.execPath, ["status.mjs", `grpc://${daemon.grpc}`], { cwd: consumer, env: pkg.env, timeout: 60_000 });
    assert.deepEqual(JSON.parse(viaClient.stdout), { version: PKG.version }, "the packaged client reaches the installed daemon");
    const page = await fetch(`http://${daemon.http}/`);
    assert.equal(page.status, 200, "the dashboard shipped in the package is served");
    assert.match(await page.text(), /<script type="module"/);
    daemon.child.kill("SIGTERM");
    const code = await new Promise((resolve) => daemon.child.once("exit", resolve));
    assert.equal(code, 0, "SIGTERM stops it cleanly");
  });
});
