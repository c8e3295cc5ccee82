import { FailedPreconditionError } from "../errors.ts";
import type { Provider } from "./provider.ts";

export interface ProviderRegistry {
  get(name: string): Provider | undefined;
  /** Like get, but a missing provider is an error that names the available ones. */
  require(name: string): Provider;
  list(): Provider[];
  closeAll(): Promise<void>;
}

export function createProviderRegistry(providers: Iterable<Provider>): ProviderRegistry {
  const byName = new Map<string, Provider>();
  for (const provider of providers) {
    if (byName.has(provider.name)) throw new Error(`provider "${provider.name}" registered twice`);
    byName.set(provider.name, provider);
  }
  return {
    get: (name) => byName.get(name),
    require(name) {
      const provider = byName.get(name);
      if (!provider) {
        const available = [...byName.keys()].join(", ") || "none";
        throw new FailedPreconditionError(`provider "${name}" is not available in this daemon (available: ${available})`);
      }
      return provider;
    },
    list: () => [...byName.values()],
    async closeAll() {
      const results = await Promise.allSettled([...byName.values()].map((p) => p.close?.()));
      const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
      if (failed) throw failed.reason;
    },
  };
}
