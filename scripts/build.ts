/**
 * Builds the daemon and hyperctl into dist/ with esbuild, so that nothing runs through tsx at start.
 *
 * Why esbuild rather than tsc: start time is the goal, and a bundle loads as a few files instead of the
 * ~230 modules of src/, gen/ and clients/ plus the ~160 files of @bufbuild/protobuf and @connectrpc/connect
 * that tsc's one-file-per-module output would load at every `hyperctl` call; it builds in well under a
 * second, so `npm start` and the test support can afford to check and rebuild every time. tsc stays the
 * type checker (`tsc --noEmit`); esbuild does not check types.
 *
 * Layout: dist/hypervisord.js (the daemon, src/main.ts) and dist/hyperctl.js (exports `main`, from
 * src/cli/main.ts) plus shared chunks; dist/clients/node.js (the Node client, package.json exports "./client",
 * with declarations in dist/types when packing) (code-split, so dynamic imports stay lazy: the OpenTelemetry SDK
 * only with tracing on, the in-process daemon only for `hyperctl export --local`). The pure-JS packages
 * every hyperctl call needs are bundled (INLINED); every other package stays an import of node_modules,
 * resolved at run time: native better-sqlite3, pino (its transports load files by path), grpc-js, ...
 * So the built program needs the package's `dependencies` and none of its devDependencies.
 *
 * Freshness: a hash of everything the build reads is kept in dist/.build-hash; the script (npm run build,
 * npm start, npm test) and ensureDistBuilt() (test support) build only when it differs, or with --force. Every file is written to a
 * temporary name and renamed into place, and chunk names carry their content's hash, so a process
 * starting while another builds sees either the old or the new build, never half of one.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { hashInputs } from "./source-hash.ts";

const ROOT = path.resolve(import.meta.dirname, "..");
export const DIST = path.join(ROOT, "dist");
const CLIENTS = path.join(DIST, "clients");
const TYPES = path.join(DIST, "types");
const HASH_FILE = path.join(DIST, ".build-hash");
/** What the bundle is made of: the sources, the build itself, and the versions of what it inlines. */
const INPUTS = ["src", "gen", "clients/core", "clients/node", "scripts/build.ts", "package.json", "package-lock.json"];
/** Packages bundled into dist: pure JS that every hyperctl call loads (commander, yaml, protobuf and Connect). */
const INLINED = ["commander", "yaml", "@bufbuild/protobuf", "@connectrpc/connect", "@connectrpc/connect-node"];

/** sha256 over the names and contents of the inputs (about 1 MiB: a few milliseconds). */
export function sourceHash(): string {
  return hashInputs(INPUTS);
}

function builtHash(): string | undefined {
  try {
    return fs.readFileSync(HASH_FILE, "utf8").trim();
  } catch {
    return undefined; // no build yet
  }
}

/** True when dist/ was built from the current sources. */
export function distIsFresh(): boolean {
  return builtHash() === sourceHash();
}

/**
 * The built files sit in dist/, one level below the package root, while their sources sat at other depths:
 * `import.meta.url` / `.dirname` / `.filename` of a source (version.ts reading ../package.json, the config's
 * default dashboard directory) are rewritten to the source's own location, computed from the bundle's,
 * so relative paths keep meaning what they meant in src/ (in a checkout and in an installed package alike).
 */
const sourceLocation = (outdir: string) => ({
  name: "source-location",
  setup(build: import("esbuild").PluginBuild) {
    build.onLoad({ filter: /\.ts$/ }, async (args) => {
      let contents = await fs.promises.readFile(args.path, "utf8");
      if (!args.path.includes(`${path.sep}node_modules${path.sep}`) && contents.includes("import.meta.")) {
        const fromDist = path.relative(outdir, args.path).split(path.sep).join("/");
        contents = contents
          .replaceAll("import.meta.url", `new URL(${JSON.stringify(fromDist)}, import.meta.url).href`)
          .replaceAll("import.meta.filename", `__hvSourcePath(${JSON.stringify(fromDist)})`)
          .replaceAll("import.meta.dirname", `__hvSourcePath(${JSON.stringify(path.posix.dirname(fromDist))})`);
      }
      return { contents, loader: "ts" };
    });
  },
});

/** Defined once per output file: `require` for the CommonJS packages bundled into ESM (commander, yaml), and __hvSourcePath for the plugin above. */
const BANNER = [
  'import { createRequire as __hvCreateRequire } from "node:module";',
  'import { fileURLToPath as __hvFileURLToPath } from "node:url";',
  "const require = __hvCreateRequire(import.meta.url);",
  "const __hvSourcePath = (relative) => __hvFileURLToPath(new URL(relative, import.meta.url));",
].join(" ");

function externalPackages(): string[] {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as { dependencies: Record<string, string> };
  return Object.keys(pkg.dependencies).filter((name) => !INLINED.includes(name)).flatMap((name) => [name, `${name}/*`]);
}

/** Writes `data` to `file` through a temporary name and a rename: readers see the old or the new file, whole. */
function writeAtomically(file: string, data: Uint8Array): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const temporary = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(temporary, data);
  fs.renameSync(temporary, file);
}

/** Builds dist/ from the current sources; resolves with the time taken in seconds. `clean`: remove every chunk of earlier builds (before packing). */
export async function buildDist({ clean = false }: { clean?: boolean } = {}): Promise<number> {
  const started = performance.now();
  const hash = sourceHash();
  // Imported here: an installed package (no devDependencies) has no esbuild, and then only building fails.
  const esbuild = await import("esbuild");
  const result = await esbuild.build({
    absWorkingDir: ROOT,
    entryPoints: { hypervisord: "src/main.ts", hyperctl: "src/cli/main.ts" },
    outdir: DIST,
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "node",
    target: "node20.19",
    chunkNames: "chunk-[hash]",
    external: externalPackages(),
    plugins: [sourceLocation(DIST)],
    banner: { js: BANNER },
    // Whitespace and syntax only: names stay, so stack traces and error names read as in the sources.
    minifyWhitespace: true,
    minifySyntax: true,
    sourcemap: "linked",
    legalComments: "linked",
    write: false,
    logLevel: "warning",
  });
  // The Node client package (package.json exports "./client"): a library, so every package stays external,
  // shared with the program that imports it (its own @bufbuild/protobuf messages, Connect errors).
  const client = await esbuild.build({
    absWorkingDir: ROOT,
    entryPoints: { node: "clients/node/index.ts" },
    outdir: CLIENTS,
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node20.19",
    packages: "external",
    plugins: [sourceLocation(CLIENTS)],
    sourcemap: "linked",
    write: false,
    logLevel: "warning",
  });
  if (clean) emitClientTypes();
  // Chunks first (new content-hashed names), then the entries that import them, then the hash.
  const outputs = [...result.outputFiles, ...client.outputFiles].sort((a, b) => Number(isEntry(a.path)) - Number(isEntry(b.path)));
  for (const file of outputs) writeAtomically(file.path, file.contents);
  removeStaleChunks(new Set(outputs.map((file) => path.basename(file.path))), clean ? Date.now() : Date.now() - 24 * 3600 * 1000);
  writeAtomically(HASH_FILE, Buffer.from(`${hash}\n`));
  return (performance.now() - started) / 1000;
}

const isEntry = (file: string) => /^(hypervisord|hyperctl)\.js$/.test(path.basename(file));

/**
 * dist/types: the client's declarations (tsc; esbuild writes none), for the package's TypeScript users. Only when
 * packing (--clean): it takes several seconds, and nothing in the checkout reads them.
 */
function emitClientTypes(): void {
  const started = performance.now();
  // Written aside and swapped in, so that a second pack at the same time never packs half of them.
  const staging = `${TYPES}.tmp-${process.pid}`;
  // Files on the command line make tsc ignore tsconfig.json: its settings that matter for declarations are repeated.
  const { status } = spawnSync(process.execPath, [
    path.join(ROOT, "node_modules/typescript/bin/tsc"), "--declaration", "--emitDeclarationOnly", "--rootDir", ".", "--outDir", staging,
    "--target", "ES2022", "--module", "NodeNext", "--moduleResolution", "NodeNext", "--types", "node", "--strict",
    "--verbatimModuleSyntax", "--allowImportingTsExtensions", "--skipLibCheck", "clients/node/index.ts",
  ], { cwd: ROOT, stdio: "inherit" });
  if (status !== 0) {
    fs.rmSync(staging, { recursive: true, force: true });
    throw new Error(`tsc could not write the client's declarations (exit ${status})`);
  }
  fs.rmSync(TYPES, { recursive: true, force: true });
  fs.renameSync(staging, TYPES);
  console.log(`client declarations written into ${path.relative(ROOT, TYPES)} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

/**
 * Chunks of earlier builds that the current entries no longer import. A process started from an earlier build
 * has loaded its chunks at start, except the lazy ones; those are kept for a day (`olderThan`), so such a process can still load them.
 */
function removeStaleChunks(current: Set<string>, olderThan: number): void {
  for (const name of fs.readdirSync(DIST)) {
    if (!name.startsWith("chunk-") || current.has(name) || name.includes(".tmp-")) continue;
    const file = path.join(DIST, name);
    if (fs.statSync(file).mtimeMs <= olderThan) fs.rmSync(file, { force: true });
  }
}

/** Builds dist/ unless it is fresh; what the test support calls before spawning bin/*. Resolves with whether it built. */
export async function ensureDistBuilt(): Promise<boolean> {
  if (distIsFresh()) return false;
  await buildDist();
  return true;
}

// `node --import tsx scripts/build.ts [--force] [--clean]` (npm run build, npm start, npm test; npm pack with --clean):
// builds unless fresh, or always with --force or --clean.
if (process.argv[1] && path.resolve(process.argv[1]) === import.meta.filename) {
  const relative = path.relative(process.cwd(), DIST) || ".";
  const clean = process.argv.includes("--clean");
  if (!process.argv.includes("--force") && !clean && distIsFresh()) {
    console.log(`daemon and hyperctl are up to date in ${relative}`);
  } else {
    const seconds = await buildDist({ clean });
    console.log(`daemon and hyperctl built into ${relative} in ${seconds.toFixed(1)} s`);
  }
}
