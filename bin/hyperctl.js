#!/usr/bin/env node
// Runs the TypeScript sources through tsx, like bin/hypervisord.js.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../src/cli/main.ts");
process.exitCode = await main(process.argv);
