import { useEffect, useRef, useState } from "react";
import { ConnectError } from "@connectrpc/connect";
import { backoffMs, sleep } from "../../../core/backoff.ts";
import type { LogEntry } from "../../index.ts";
import { formatClock, formatTime, toDate } from "../format.ts";
import { logFields } from "../log-line.ts";
import { ErrorMessage } from "./error-message.tsx";
import { useClient } from "../session.tsx";

const TAIL = 500;
const KEEP = 2_000;

/** The job's log, the last lines first loaded and then followed live while the job runs (resumed after a drop with after_id). */
export function JobLogs({ jobId, follow }: { jobId: string; follow: boolean }) {
  const client = useClient();
  const [entries, setEntries] = useState<LogEntry[]>([]);
  const [error, setError] = useState<unknown>();
  const box = useRef<HTMLPreElement>(null);
  const lastId = useRef(0n);
  useEffect(() => {
    setEntries([]);
    lastId.current = 0n;
  }, [jobId]);
  useEffect(() => {
    const controller = new AbortController();
    const signal = controller.signal;
    void (async () => {
      for (let failures = 0; !signal.aborted; ) {
        try {
          const afterId = lastId.current;
          const stream = client.streamJobLogs({ jobId, afterId, tail: afterId === 0n ? TAIL : 0, follow }, { signal });
          for await (const { entry } of stream) {
            if (!entry || entry.id <= lastId.current) continue;
            lastId.current = entry.id;
            failures = 0;
            setError(undefined);
            setEntries((list) => [...list, entry].slice(-KEEP));
          }
          setError(undefined);
          return; // not following: the stream ends with the last line
        } catch (err) {
          if (signal.aborted) return;
          setError(ConnectError.from(err));
          await sleep(backoffMs(failures++, { initialMs: 500, maxMs: 10_000 }), signal).catch(() => undefined);
        }
      }
    })();
    return () => controller.abort();
  }, [client, jobId, follow]);
  // Keep the newest line in view unless the reader scrolled up.
  useEffect(() => {
    const el = box.current;
    if (el && el.scrollHeight - el.scrollTop - el.clientHeight < 80) el.scrollTop = el.scrollHeight;
  }, [entries]);
  return (
    <>
      <ErrorMessage error={error} prefix="Logs" />
      <pre className="logs" ref={box} tabIndex={0} aria-label="Job log" aria-live="off">
        {entries.length === 0 && <span className="log-time">{follow ? "waiting for log lines…" : "no log lines"}</span>}
        {entries.map((e) => <LogLine key={String(e.id)} entry={e} />)}
      </pre>
    </>
  );
}

/** "13:47:48 INFO  fake disk written file=web-disk-1.img bytes=4194304": time, level, message, then the fields. */
function LogLine({ entry: e }: { entry: LogEntry }) {
  const fields = logFields(e.fieldsJson);
  return (
    <div className={`log-line log-${e.level}`}>
      <span className="log-time" title={formatTime(e.time)}>{formatClock(toDate(e.time))}</span> <span className="log-level">{e.level.toUpperCase().padEnd(5)}</span> {e.message}
      {fields.map(([key, value]) => <span key={key} className="log-field"> <span className="log-key">{key}=</span>{value}</span>)}
    </div>
  );
}
