#!/usr/bin/env node
// Runs the TypeScript sources through tsx, so that the installed command and `npm start` are the same program.
import { register } from "tsx/esm/api";

register();
await import("../src/main.ts");
