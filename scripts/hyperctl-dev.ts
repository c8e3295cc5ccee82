// `npm run dev:cli -- ARGS`: hyperctl from the TypeScript sources through tsx (bin/hyperctl.js runs the build in dist/).
import { main } from "../src/cli/main.ts";

process.exitCode = await main(process.argv);
