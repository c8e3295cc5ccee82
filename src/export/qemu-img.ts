import fs from "node:fs";
import path from "node:path";

/** Absolute path of an executable found on PATH, or undefined. */
export function findExecutable(name: string, envPath = process.env.PATH ?? ""): string | undefined {
  for (const dir of envPath.split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      if (fs.statSync(candidate).isFile()) return candidate;
    } catch {
      // Not in this directory: look in the next.
    }
  }
  return undefined;
}
