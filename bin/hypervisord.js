#!/usr/bin/env node
// Runs the built daemon (dist/hypervisord.js, made by `npm run build`; `npm start` builds it when stale,
// `npm run dev` runs the sources through tsx). Stack traces in the logs point into src/ through the source maps.
process.setSourceMapsEnabled(true);
await import("../dist/hypervisord.js").catch((err) => {
  if (err?.code !== "ERR_MODULE_NOT_FOUND" || !String(err.message).includes("dist/hypervisord.js")) throw err;
  process.stderr.write("hypervisord: not built (dist/hypervisord.js is missing): run `npm run build` in the checkout\n");
  process.exit(2);
});
