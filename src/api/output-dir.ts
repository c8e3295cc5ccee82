import fs from "node:fs";
import path from "node:path";
import { InvalidArgumentError } from "../errors.ts";

export function isInside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === "" || (rel !== ".." && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel));
}

/** The roots with their symbolic links resolved; compute once per set of roots. */
export function realPaths(roots: readonly string[]): string[] {
  return roots.map((r) => (fs.existsSync(r) ? fs.realpathSync(r) : r));
}

/**
 * Resolves a requested output directory against the allowed roots: relative
 * paths go under the first root; the result, after following every symbolic
 * link that already exists on the way, must lie under one of the roots.
 */
export function resolveOutputDir(requested: string, roots: readonly string[], field: string, realRoots = realPaths(roots)): string {
  const allowed = `allowed output roots: ${roots.join(", ")}`;
  if (requested.includes("\0")) throw new InvalidArgumentError(field, "contains a NUL byte");
  const candidate = path.isAbsolute(requested) ? path.resolve(requested) : path.resolve(roots[0]!, requested);
  const root = roots.find((r) => isInside(candidate, r));
  if (!root) throw new InvalidArgumentError(field, `"${requested}" resolves to ${candidate}, outside the ${allowed}`);
  let existing = candidate;
  while (!fs.existsSync(existing) && existing !== path.dirname(existing)) existing = path.dirname(existing);
  const real = fs.realpathSync(existing);
  if (!realRoots.some((r) => isInside(real, r))) {
    throw new InvalidArgumentError(field, `"${requested}" leads outside the ${allowed} through a symbolic link (${existing} is ${real})`);
  }
  return candidate;
}
