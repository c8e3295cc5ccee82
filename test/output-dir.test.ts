import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { resolveOutputDir } from "../src/api/output-dir.ts";
import { InvalidArgumentError } from "../src/errors.ts";
import { tempDir } from "./support/temp-dir.ts";

const FIELD = "definition.output_dir";

test("output_dir stays under the allowed roots", () => {
  const root = tempDir("root");
  const second = tempDir("root2");
  const outside = tempDir("outside");
  const roots = [root, second];
  fs.symlinkSync(outside, path.join(root, "escape"));
  fs.mkdirSync(path.join(root, "real"));
  fs.symlinkSync(path.join(root, "real"), path.join(root, "inside-link"));

  assert.equal(resolveOutputDir("", roots, FIELD), root, "empty: the first root");
  assert.equal(resolveOutputDir("nightly/web", roots, FIELD), path.join(root, "nightly/web"), "relative: under the first root");
  assert.equal(resolveOutputDir(path.join(second, "x"), roots, FIELD), path.join(second, "x"), "absolute under another root");
  assert.equal(resolveOutputDir("a/../b", roots, FIELD), path.join(root, "b"), ".. that stays inside is fine");
  assert.equal(resolveOutputDir("inside-link/new", roots, FIELD), path.join(root, "inside-link/new"), "a link that stays inside is fine");

  const refused: [string, RegExp][] = [
    ["/etc", /"\/etc" resolves to \/etc, outside the allowed output roots: /],
    ["../../etc", /outside the allowed output roots/],
    [`${root}/../x`, /outside the allowed output roots/],
    [`${root}x/y`, /outside the allowed output roots/],
    ["escape", /through a symbolic link/],
    ["escape/deeper/still", /through a symbolic link/],
    ["bad\0name", /NUL byte/],
  ];
  for (const [requested, pattern] of refused) {
    assert.throws(() => resolveOutputDir(requested, roots, FIELD), (err) =>
      err instanceof InvalidArgumentError && err.field === FIELD && err.message.startsWith(`${FIELD}: `) && pattern.test(err.message)
      && (!/outside the allowed/.test(err.message) || err.message.includes(root)), requested);
  }
});
