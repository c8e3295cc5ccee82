import fs from "node:fs";
import path from "node:path";

export const LOCK_FILE = "hypervisord.pid";

/**
 * One daemon per data directory, or two would run the same jobs. The lock is a
 * pid file; one left by a process that no longer exists (kill -9) is taken over.
 * Returns the release function.
 */
export function lockDataDir(dataDir: string): () => void {
  const file = path.join(dataDir, LOCK_FILE);
  for (let tries = 0; ; tries++) {
    try {
      fs.writeFileSync(file, `${process.pid}\n`, { flag: "wx", mode: 0o600 });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST" || tries > 0) throw err;
      const pid = Number(fs.readFileSync(file, "utf8").trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) {
        throw new Error(`the data directory ${dataDir} is in use by another hypervisord (pid ${pid}); if that process is gone, delete ${file}`);
      }
      fs.rmSync(file, { force: true });
    }
  }
  return () => {
    if (fs.readFileSync(file, "utf8").trim() === String(process.pid)) fs.rmSync(file, { force: true });
  };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
