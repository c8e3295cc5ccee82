#!/usr/bin/env node
// Runs the built CLI (dist/hyperctl.js, made by `npm run build`); `npm run dev:cli -- ARGS` runs the sources through tsx.
const { main } = await import("../dist/hyperctl.js").catch(notBuilt);
process.exitCode = await main(process.argv);

function notBuilt(err) {
  if (err?.code !== "ERR_MODULE_NOT_FOUND" || !String(err.message).includes("dist/hyperctl.js")) throw err;
  process.stderr.write("hyperctl: not built (dist/hyperctl.js is missing): run `npm run build` in the checkout\n");
  process.exit(2);
}
