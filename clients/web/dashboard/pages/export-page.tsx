import { useMemo, useState, type FormEvent } from "react";
import { DefinitionFields, definitionFromForm } from "../components/definition-fields.tsx";
import { ErrorMessage } from "../components/error-message.tsx";
import { useQuery } from "../query.ts";
import { navigate } from "../router.ts";
import { useClient } from "../session.tsx";

/** A random request id per form: submitting twice (a double click, a retry after a timeout) makes one job. */
function newRequestId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return `web-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** "Export & convert": pick a VM, the package and a conversion, submit, and land on the job page. `?from=JOB` starts from a job's settings. */
export function ExportPage({ params }: { params: URLSearchParams }) {
  const client = useClient();
  const from = params.get("from") ?? "";
  const setup = useQuery(async (signal) => {
    const [capabilities, profiles, source] = await Promise.all([
      client.getCapabilities({}, { signal }),
      client.listProfiles({}, { signal }),
      from ? client.getJob({ jobId: from }, { signal }) : undefined,
    ]);
    return { capabilities, profiles: profiles.profiles, initial: source?.job?.definition };
  }, [client, from]);
  const requestId = useMemo(newRequestId, [from]);
  const [error, setError] = useState<unknown>();
  const [submitting, setSubmitting] = useState(false);
  const submit = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    setError(undefined);
    setSubmitting(true);
    try {
      const definition = definitionFromForm(new FormData(event.currentTarget));
      definition.requestId = requestId;
      const { job, batch } = await client.submitJob({ definition });
      // A folder or a name pattern makes a batch (a job per VM): its page shows them all.
      navigate(batch ? `/batches/${batch.id}` : `/jobs/${job!.id}`);
    } catch (err) {
      setError(err);
    } finally {
      setSubmitting(false);
    }
  };
  if (!setup.data) return <><h1>Export & convert</h1>{setup.error ? <ErrorMessage error={setup.error} /> : <p aria-busy="true">Loading…</p>}</>;
  const initial = setup.data.initial ? { ...setup.data.initial, requestId: "", name: "" } : undefined;
  return (
    <>
      <h1>Export &amp; convert</h1>
      <p className="muted">Exports the VM into an OVF directory or an OVA file with a checksummed manifest, optionally converting its disks to qcow2, raw or vdi for KVM. The source VM is not changed.</p>
      <form className="stacked" onSubmit={submit} aria-label="Export" key={from}>
        <DefinitionFields initial={initial} capabilities={setup.data.capabilities} profiles={setup.data.profiles} />
        <ErrorMessage error={error} prefix="Not submitted" />
        <div className="actions">
          <button type="submit" className="primary" disabled={submitting}>{submitting ? "Submitting…" : "Start export"}</button>
        </div>
      </form>
    </>
  );
}
