// Builds the dashboard (clients/web/dashboard) into clients/web/dist, which the daemon serves at `/`.
// `npm run dev:web` serves it with hot reload and forwards the API to a running daemon (HYPERVISORD_URL).
import path from "node:path";
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

const here = import.meta.dirname;
const daemon = process.env.HYPERVISORD_URL ?? "http://127.0.0.1:8080";

export default defineConfig({
  root: path.join(here, "dashboard"),
  // Relative asset URLs: the page also works behind a proxy that mounts the daemon under a sub-path.
  base: "./",
  plugins: [react()],
  build: {
    outDir: path.join(here, "dist"),
    emptyOutDir: true,
    target: "es2022",
    sourcemap: true,
    // One small app: no module preload polyfill (it would be an inline script, which the CSP forbids).
    modulePreload: { polyfill: false },
  },
  server: {
    proxy: { "/hypervisord.v1.HypervisordService": { target: daemon, changeOrigin: true } },
  },
  logLevel: "warn",
});
