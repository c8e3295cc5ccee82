import { Counter, type Registry } from "prom-client";

export interface CumulativeCounterOptions<V extends string> {
  name: string;
  help: string;
  registry: Registry;
  /** The one label, e.g. "result", and every value it takes (each series exists from the start, at 0). */
  label: string;
  values: readonly V[];
  /** Totals since the source started, read at scrape time. */
  read?: () => Record<V, number>;
}

/**
 * A counter that follows totals kept elsewhere (the webhook dispatcher's and the scheduler's own
 * counters). prom-client counters cannot be set, so each scrape adds what the totals grew by since
 * the last one; a total that went down (its source was recreated) counts from zero again.
 */
export function createCumulativeCounter<V extends string>(options: CumulativeCounterOptions<V>): Counter<string> {
  const seen = new Map<V, number>(options.values.map((value) => [value, 0]));
  const counter: Counter<string> = new Counter({
    name: options.name,
    help: options.help,
    labelNames: [options.label],
    registers: [options.registry],
    collect() {
      if (!options.read) return;
      const totals = options.read();
      for (const value of options.values) {
        const total = totals[value];
        const last = seen.get(value)!;
        const delta = total >= last ? total - last : total;
        seen.set(value, total);
        if (delta > 0) counter.inc({ [options.label]: value }, delta);
      }
    },
  });
  for (const value of options.values) counter.inc({ [options.label]: value }, 0);
  return counter;
}
