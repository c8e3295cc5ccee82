/** What a check may answer: a truthy value ends the wait (and is returned), anything else polls again. */
type Check<T> = () => T | undefined | null | false | Promise<T | undefined | null | false>;

/**
 * Polls `check` every `intervalMs` until it answers a truthy value, and returns that value; fails after
 * `timeoutMs` with an error naming `what` was awaited (tests read as "waitFor('the probe', ...)").
 */
export async function waitFor<T>(what: string, check: Check<T>, timeoutMs = 10_000, intervalMs = 10): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
