import { useState, type FormEvent } from "react";
import { useLive, useSession } from "../session.tsx";
import { Field } from "./field.tsx";

/** Asks for an API key when the daemon wants one. The key lives in this tab's session storage only. */
export function ApiKeyForm() {
  const { setApiKey, apiKey } = useSession();
  const live = useLive();
  const [key, setKey] = useState("");
  const submit = (event: FormEvent) => {
    event.preventDefault();
    setApiKey(key.trim());
  };
  return (
    <section className="card auth" aria-labelledby="auth-title">
      <h1 id="auth-title">Sign in</h1>
      <p>{apiKey ? `The daemon refused this API key: ${live.lastError}` : "The daemon requires an API key."}</p>
      <form onSubmit={submit}>
        <Field label="API key" hint={<>Create one with <code>hyperctl keys create</code>. It is kept for this browser tab only (session storage).</>}>
          <input type="password" name="api-key" autoComplete="off" spellCheck={false} required value={key} onChange={(e) => setKey(e.target.value)} autoFocus />
        </Field>
        <button type="submit" className="primary">Use this key</button>
      </form>
    </section>
  );
}
