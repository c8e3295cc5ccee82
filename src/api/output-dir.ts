import fs from "node:fs";
import path from "node:path";
import { callerPathProblem, InvalidArgumentError, quoteInput, toHypervisordError } from "../errors.ts";
import { isInside } from "../files/fs-utils.ts";

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
  checkPathLength(candidate, field);
  const root = roots.find((r) => isInside(candidate, r));
  if (!root) throw new InvalidArgumentError(field, `${quoteInput(requested)} resolves to ${shown(candidate)}, outside the ${allowed}`);
  // Usually the directory exists: one realpath(3) answers, instead of access(2) then an lstat(2) per component.
  let existing = candidate;
  let real = realIfExists(candidate);
  if (real === undefined) {
    while (!fs.existsSync(existing) && existing !== path.dirname(existing)) existing = path.dirname(existing);
    real = pathCheck(() => fs.realpathSync(existing), field, existing);
  }
  if (!realRoots.some((r) => isInside(real, r))) {
    throw new InvalidArgumentError(field, `${quoteInput(requested)} leads outside the ${allowed} through a symbolic link (${shown(existing)} is ${shown(real)})`);
  }
  if (existing !== candidate && !pathCheck(() => fs.statSync(existing), field, existing).isDirectory()) {
    throw new InvalidArgumentError(field, `${shown(existing)} is not a directory`);
  }
  return candidate;
}

/** The path with its links resolved when it exists and resolves; undefined otherwise (the caller then finds out why). */
function realIfExists(file: string): string | undefined {
  try {
    return fs.realpathSync.native(file);
  } catch {
    return undefined;
  }
}

/** Linux limits (PATH_MAX, NAME_MAX): a longer path fails in open() or mkdir() with ENAMETOOLONG. */
const MAX_PATH_BYTES = 4095;
const MAX_NAME_BYTES = 255;

function checkPathLength(resolved: string, field: string): void {
  const bytes = Buffer.byteLength(resolved);
  if (bytes > MAX_PATH_BYTES) throw new InvalidArgumentError(field, `resolves to a path of ${bytes} bytes; at most ${MAX_PATH_BYTES}`);
  const long = resolved.split(path.sep).find((name) => Buffer.byteLength(name) > MAX_NAME_BYTES);
  if (long !== undefined) throw new InvalidArgumentError(field, `has a path component of ${Buffer.byteLength(long)} bytes (${quoteInput(long)}); at most ${MAX_NAME_BYTES}`);
}

/** Runs one filesystem check of a caller's path, turning the errors its path caused into INVALID_ARGUMENT. */
function pathCheck<T>(run: () => T, field: string, file: string): T {
  try {
    return run();
  } catch (err) {
    const problem = callerPathProblem(err);
    if (problem) throw new InvalidArgumentError(field, `${shown(file)} ${problem}`);
    throw toHypervisordError(err, `checking ${shown(file)}`);
  }
}

/** A path in a message: whole when short, else cut (quoteInput). */
function shown(file: string): string {
  return file.length <= 256 ? file : quoteInput(file, 256);
}
