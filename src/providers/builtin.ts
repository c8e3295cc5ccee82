import type { Provider } from "./provider.ts";

/**
 * The providers compiled into the daemon. The vSphere provider joins this
 * list with its own issue; until then the daemon runs no exports by itself
 * (tests add a fake provider through test/support/fake-daemon.ts).
 */
export function builtinProviders(): Provider[] {
  return [];
}
