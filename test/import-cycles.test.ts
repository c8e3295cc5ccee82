import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import ts from "typescript";

/*
 * Data flows one way (README, "Layout"): a folder under src/ may import the folders below it, never one that
 * imports it back. A cycle between folders is a contract living in the wrong layer; this test names it as soon as
 * it appears, with the file that closes it. Type-only imports count: they are an arrow too.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const SKIP_DIRS = new Set(["node_modules", "dist"]);

interface ImportEdge {
  from: string;
  to: string;
}

function sourceFiles(dir: string): string[] {
  const files: string[] = [];
  for (const entry of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const relative = path.posix.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (!SKIP_DIRS.has(entry.name)) files.push(...sourceFiles(relative));
    } else if (/\.tsx?$/.test(entry.name) && !entry.name.endsWith(".d.ts")) {
      files.push(relative);
    }
  }
  return files;
}

/** The relative specifiers of a file's static `import … from` / `export … from` / `import "…"`, resolved to repository paths. */
function relativeImports(file: string, text = fs.readFileSync(path.join(ROOT, file), "utf8")): string[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, false, file.endsWith(".tsx") ? ts.ScriptKind.TSX : ts.ScriptKind.TS);
  const targets: string[] = [];
  for (const statement of source.statements) {
    const specifier = (ts.isImportDeclaration(statement) || ts.isExportDeclaration(statement)) ? statement.moduleSpecifier : undefined;
    if (specifier && ts.isStringLiteral(specifier) && specifier.text.startsWith(".")) {
      targets.push(path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier.text)));
    }
  }
  return targets;
}

/**
 * The folder a file belongs to: the first segment under src/ (src/store/sqlite/x.ts is "store"), a file directly
 * in src/ is its own node ("daemon.ts"), clients/<x>/… is "clients/<x>". Anything else (gen/, test/) is outside the graph.
 */
function folderOf(file: string): string | undefined {
  const parts = file.split("/");
  if (parts[0] === "src" && parts.length >= 2) return parts[1];
  if (parts[0] === "clients" && parts.length >= 3) return `clients/${parts[1]}`;
  return undefined;
}

const edges: ImportEdge[] = [...sourceFiles("src"), ...sourceFiles("clients")].flatMap((from) => relativeImports(from).map((to) => ({ from, to })));

/** Folder graph: for each arrow a -> b, the file imports that make it (sorted, so the message is stable). */
function folderGraph(imports: readonly ImportEdge[] = edges): Map<string, Map<string, ImportEdge[]>> {
  const graph = new Map<string, Map<string, ImportEdge[]>>();
  for (const edge of imports) {
    const a = folderOf(edge.from);
    const b = folderOf(edge.to);
    if (a === undefined || b === undefined || a === b) continue;
    if (!graph.has(a)) graph.set(a, new Map());
    const out = graph.get(a)!;
    if (!out.has(b)) out.set(b, []);
    out.get(b)!.push(edge);
  }
  for (const out of graph.values()) for (const list of out.values()) list.sort((x, y) => x.from.localeCompare(y.from) || x.to.localeCompare(y.to));
  return graph;
}

/** The shortest folder path from `start` to `goal` (breadth first, neighbours in name order), or undefined. */
function shortestPath(graph: Map<string, Map<string, ImportEdge[]>>, start: string, goal: string): string[] | undefined {
  const previous = new Map<string, string>([[start, start]]);
  const queue = [start];
  while (queue.length > 0) {
    const node = queue.shift()!;
    if (node === goal) {
      const route = [goal];
      while (route[0] !== start) route.unshift(previous.get(route[0]!)!);
      return route;
    }
    for (const next of [...(graph.get(node)?.keys() ?? [])].sort()) {
      if (!previous.has(next)) {
        previous.set(next, node);
        queue.push(next);
      }
    }
  }
  return undefined;
}

/**
 * Every arrow a -> b that some path b -> … -> a closes into a cycle, each cycle once (rotated to start at its
 * smallest folder name), with one file import per arrow: `a -> b -> a (src/a/x.ts imports src/b/y.ts; …)`.
 */
function folderCycles(imports: readonly ImportEdge[] = edges): string[] {
  const graph = folderGraph(imports);
  const seen = new Set<string>();
  const cycles: string[] = [];
  for (const [a, out] of [...graph].sort(([x], [y]) => x.localeCompare(y))) {
    for (const b of [...out.keys()].sort()) {
      const back = shortestPath(graph, b, a);
      if (!back) continue;
      const ring = [a, ...back.slice(0, -1)];
      const first = ring.indexOf([...ring].sort()[0]!);
      const rotated = [...ring.slice(first), ...ring.slice(0, first)];
      const key = rotated.join(" -> ");
      if (seen.has(key)) continue;
      seen.add(key);
      const closed = [...rotated, rotated[0]!];
      const witnesses = closed.slice(0, -1).map((from, i) => {
        const edge = graph.get(from)!.get(closed[i + 1]!)![0]!;
        return `${edge.from} imports ${edge.to}`;
      });
      cycles.push(`${closed.join(" -> ")} (${witnesses.join("; ")})`);
    }
  }
  return cycles;
}

test("no import cycle between folders of src/ and clients/", () => {
  const cycles = folderCycles();
  assert.deepEqual(cycles, [], `import cycles between folders:\n  ${cycles.join("\n  ")}`);
});

test("nothing under src/ imports from test/", () => {
  const offending = edges.filter((e) => e.from.startsWith("src/") && e.to.startsWith("test/")).map((e) => `${e.from} imports ${e.to}`);
  assert.deepEqual(offending, []);
});

test("nothing below src/api imports a transport (src/server)", () => {
  // "Below api" is what api depends on: api itself and every folder it reaches through its imports.
  const graph = folderGraph();
  const offending = [...graph.keys()].filter((folder) => folder !== "server").flatMap((folder) => {
    const route = shortestPath(graph, "api", folder);
    const imports = route ? graph.get(folder)?.get("server") ?? [] : [];
    return imports.map((e) => `${e.from} imports ${e.to} (${route!.join(" -> ")})`);
  });
  assert.deepEqual(offending, [], `api, or a folder it imports, imports src/server:\n  ${offending.join("\n  ")}`);
});

test("the import scan reads every kind of static import, and nothing else", () => {
  // A check that parses nothing passes forever: the scan is shown a sample with each kind, and the tree's count.
  const sample = [
    'import type { Call } from "../rpc/call-hooks.ts";',
    'import { a, type B } from "./a.ts";',
    'import "../side-effect.ts";',
    'export { c } from "../domain/c.ts";',
    'export type * from "../domain/d.ts";',
    'import fs from "node:fs";',
    '// import { old } from "../commented-out.ts";',
    'const text = `import { x } from "../in-a-string.ts"`;',
    'const later = () => import("../dynamic.ts");',
  ].join("\n");
  assert.deepEqual(relativeImports("src/api/sample.ts", sample).sort(), [
    "src/api/a.ts", "src/domain/c.ts", "src/domain/d.ts", "src/rpc/call-hooks.ts", "src/side-effect.ts",
  ]);
  assert.ok(relativeImports("clients/web/dashboard/x.tsx", 'import { y } from "../y.ts";\nconst e = <div>{y}</div>;').includes("clients/web/y.ts"), "a .tsx file");
  assert.equal(folderOf("src/store/sqlite/sqlite-store.ts"), "store");
  assert.equal(folderOf("src/daemon.ts"), "daemon.ts");
  assert.equal(folderOf("clients/web/dashboard/app.tsx"), "clients/web");
  assert.equal(folderOf("gen/hypervisord/v1/job_pb.ts"), undefined);
  // And the cycle search finds a cycle when there is one, two folders or three, each once.
  assert.deepEqual(folderCycles([
    { from: "src/store/sqlite/sqlite-store.ts", to: "src/webhooks/events.ts" },
    { from: "src/webhooks/dispatcher.ts", to: "src/store/store.ts" },
    { from: "src/engine/engine.ts", to: "src/tracing/job-tracer.ts" },
    { from: "src/tracing/tracing-hook.ts", to: "src/api/status.ts" },
    { from: "src/api/service.ts", to: "src/engine/engine.ts" },
    { from: "src/api/jobs.ts", to: "src/store/store.ts" },
  ]), [
    "api -> engine -> tracing -> api (src/api/service.ts imports src/engine/engine.ts; src/engine/engine.ts imports src/tracing/job-tracer.ts; src/tracing/tracing-hook.ts imports src/api/status.ts)",
    "store -> webhooks -> store (src/store/sqlite/sqlite-store.ts imports src/webhooks/events.ts; src/webhooks/dispatcher.ts imports src/store/store.ts)",
  ]);
  assert.ok(edges.length > 500, `only ${edges.length} relative imports found under src/ and clients/`);
});
