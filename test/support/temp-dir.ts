import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const made: string[] = [];
// Removed when the test process ends (its daemons are stopped by then), not after each test: a daemon
// restarted on the same data directory, or an assertion on files left behind, may span tests.
process.once("exit", () => {
  for (const dir of made) {
    try {
      fs.rmSync(dir, { recursive: true, force: true });
    } catch (err) {
      // A directory left behind is no test failure; say so rather than change the exit code.
      process.stderr.write(`could not remove ${dir}: ${(err as Error).message}\n`);
    }
  }
});

/** A fresh directory under the OS temp dir, `hvd-<prefix>-XXXXXX`. */
export function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `hvd-${prefix}-`));
  made.push(dir);
  return dir;
}
