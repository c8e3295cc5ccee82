/** Resources released in reverse order of acquisition, once (after graphile-worker's withReleasers). */
export function createReleasers() {
  const releasers: (() => unknown)[] = [];
  let released = false;
  return {
    add(release: () => unknown): void {
      if (released) throw new Error("resources already released");
      releasers.push(release);
    },
    async releaseAll(): Promise<void> {
      if (released) throw new Error("resources already released");
      released = true;
      const errors: unknown[] = [];
      for (const release of releasers.reverse()) {
        try {
          await release();
        } catch (err) {
          errors.push(err);
        }
      }
      if (errors.length > 0) throw new AggregateError(errors, "releasing resources failed");
    },
  };
}
