import { createHash } from "node:crypto";
import type { Logger } from "pino";
import type { VSphereConnection } from "../../domain/job.ts";
import { openSession, type VSphereSession } from "./session.ts";

export interface SessionPoolOptions {
  /** HTTP connections per endpoint, shared by the session's calls and downloads. */
  maxConnections: number;
  /** A session unused this long is logged out. */
  idleTimeoutMs: number;
  /** A session unused this long is checked (and logged in again if the server dropped it) before it is used. */
  healthCheckAfterMs?: number;
  logger: Logger;
}

export interface SessionPoolStats {
  endpoints: number;
  opened: number;
  reused: number;
  relogins: number;
  closed: number;
  inUse: number;
}

interface Entry {
  session: Promise<VSphereSession>;
  users: number;
  idleTimer?: NodeJS.Timeout;
  lastUsed: number;
}


/**
 * One logged-in session per (URL, user, password), shared by every job and
 * discovery call that uses it (vim25 sessions take concurrent calls), logged
 * out after it has been idle for a while and at shutdown: vCenter caps
 * sessions per user, and leaked sessions lock users out.
 */
export function createSessionPool(options: SessionPoolOptions) {
  const entries = new Map<string, Entry>();
  const counters = { opened: 0, reused: 0, closed: 0, reloginsOfClosed: 0 };

  const keyOf = (c: VSphereConnection) =>
    [c.url, c.username, createHash("sha256").update(c.password).digest("hex"), c.insecure, c.thumbprint].join("\n");

  function retire(key: string, entry: Entry): Promise<void> {
    if (entries.get(key) === entry) entries.delete(key);
    clearTimeout(entry.idleTimer);
    return entry.session.then(
      async (session) => {
        counters.reloginsOfClosed += session.relogins;
        counters.closed++;
        await session.close();
      },
      () => undefined,
    );
  }

  return {
    /** Runs `use` with a session for the connection, opening one if needed. */
    async use<T>(connection: VSphereConnection, signal: AbortSignal, use: (session: VSphereSession) => Promise<T>): Promise<T> {
      const key = keyOf(connection);
      let entry = entries.get(key);
      if (entry) counters.reused++;
      else {
        entry = { session: openSession(connection, options, signal), users: 0, lastUsed: Date.now() };
        entries.set(key, entry);
        counters.opened++;
        // A failed login is not kept: the next caller tries again.
        entry.session.catch(() => entries.get(key) === entry && entries.delete(key));
      }
      const current = entry;
      current.users++;
      clearTimeout(current.idleTimer);
      try {
        const session = await current.session;
        if (Date.now() - current.lastUsed > (options.healthCheckAfterMs ?? 60_000)) await session.ensureAlive(signal);
        return await use(session);
      } finally {
        current.lastUsed = Date.now();
        current.users--;
        if (current.users === 0 && entries.get(key) === current) {
          current.idleTimer = setTimeout(() => void retire(key, current), options.idleTimeoutMs);
          current.idleTimer.unref();
        }
      }
    },
    async stats(): Promise<SessionPoolStats> {
      let relogins = counters.reloginsOfClosed;
      let inUse = 0;
      for (const entry of entries.values()) {
        inUse += entry.users;
        relogins += await entry.session.then((s) => s.relogins, () => 0);
      }
      return { endpoints: entries.size, opened: counters.opened, reused: counters.reused, relogins, closed: counters.closed, inUse };
    },
    /** Logs every session out. */
    async closeAll(): Promise<void> {
      await Promise.all([...entries].map(([key, entry]) => retire(key, entry)));
    },
  };
}

