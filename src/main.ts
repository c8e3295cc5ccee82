import { builtinProviders } from "./daemon/builtin-providers.ts";
import { run } from "./run.ts";

await run(process.argv.slice(2), process.env, builtinProviders);
