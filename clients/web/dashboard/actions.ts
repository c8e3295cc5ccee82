// What the forms and list pages do with a call that changes something: one at a time, its failure
// kept to show, the in-flight state to disable buttons with.
import { useState, type FormEvent } from "react";

/** A form's submit handler around `run(form)`: the error it threw (shown by the form) and whether it is running. */
export function useFormSubmit(run: (form: FormData) => Promise<void>) {
  const [error, setError] = useState<unknown>();
  const [pending, setPending] = useState(false);
  const onSubmit = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    setError(undefined);
    setPending(true);
    try {
      await run(new FormData(event.currentTarget));
    } catch (err) {
      setError(err);
    } finally {
      setPending(false);
    }
  };
  return { onSubmit: (event: FormEvent<HTMLFormElement>) => void onSubmit(event), error, pending };
}

/**
 * The row actions of a list page (enable, trigger, test, delete, ...): `run` clears the last notice,
 * marks the row busy, shows a failure above the table under the action's name, and reloads the list
 * after a success. `N` is what the page shows as a notice.
 */
export function useRowActions<N>(reload: () => void) {
  const [busy, setBusy] = useState<{ id: string; action: string }>();
  const [failure, setFailure] = useState<{ action: string; error: unknown }>();
  const [notice, setNotice] = useState<N>();
  const run = async (action: string, id: string, call: () => Promise<void>) => {
    setFailure(undefined);
    setNotice(undefined);
    setBusy({ id, action });
    try {
      await call();
      reload();
    } catch (error) {
      setFailure({ action, error });
    } finally {
      setBusy(undefined);
    }
  };
  return { run, busy, failure, setFailure, notice, setNotice };
}

/** Which rows are expanded: a set of ids and a toggle. */
export function useToggleSet(): [ReadonlySet<string>, (id: string) => void] {
  const [open, setOpen] = useState<ReadonlySet<string>>(new Set());
  const toggle = (id: string) => setOpen((current) => {
    const next = new Set(current);
    if (!next.delete(id)) next.add(id);
    return next;
  });
  return [open, toggle];
}

/** A text input's value from a submitted form, trimmed ("" when absent). */
export function formText(form: FormData, name: string): string {
  return String(form.get(name) ?? "").trim();
}
