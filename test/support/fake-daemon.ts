// The real daemon process (src/run.ts) with the test providers added: what tests spawn and kill.
import { builtinProviders } from "../../src/daemon/builtin-providers.ts";
import { run } from "../../src/run.ts";
import { fakeProviders } from "./fake-provider.ts";

await run(process.argv.slice(2), process.env, (config, logger, tools) => [...builtinProviders(config, logger, tools), ...fakeProviders()]);
