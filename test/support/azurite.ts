import { spawn, type ChildProcess } from "node:child_process";
import net from "node:net";
import path from "node:path";
import readline from "node:readline";
import { tempDir } from "./temp-dir.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const BIN = path.join(ROOT, "node_modules", "azurite", "dist", "src", "blob", "main.js");

/** Azurite's well-known development account (documented by Microsoft; not a secret). */
export const AZURITE_ACCOUNT = "devstoreaccount1";
export const AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

export interface Azurite {
  /** e.g. http://127.0.0.1:PORT/devstoreaccount1 (path-style, as Azurite serves accounts). */
  blobEndpoint: string;
  host: string;
  port: number;
  account: string;
  accountKey: string;
  /** For @azure/storage-blob: BlobServiceClient.fromConnectionString(connectionString). */
  connectionString: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * Microsoft's storage emulator (blob service only), from node_modules, on a free port with a throw-away
 * location; resolves once it listens. Telemetry is off (no network here) and the API version check is skipped,
 * so that SDKs newer than the emulator still talk to it.
 */
export async function startAzurite(options: { inMemory?: boolean } = {}): Promise<Azurite> {
  const port = await freePort();
  const location = tempDir("azurite");
  const args = [BIN, "--blobHost", "127.0.0.1", "--blobPort", String(port), ...(options.inMemory ? [] : ["--location", location]),
    "--skipApiVersionCheck", "--loose", "--disableTelemetry", ...(options.inMemory ? ["--inMemoryPersistence"] : [])];
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  const output: string[] = [];
  child.stderr!.on("data", (chunk: Buffer) => output.push(chunk.toString()));
  await new Promise<void>((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout! });
    const timer = setTimeout(() => reject(new Error(`Azurite did not start in 30 s: ${output.join("").slice(-500)}`)), 30_000);
    lines.on("line", (line) => {
      output.push(line);
      if (/successfully listens/.test(line)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`Azurite exited with ${code} before it listened: ${output.join("\n").slice(-500)}`));
    });
  });
  child.stdout!.resume();
  const blobEndpoint = `http://127.0.0.1:${port}/${AZURITE_ACCOUNT}`;
  return {
    blobEndpoint,
    host: "127.0.0.1",
    port,
    account: AZURITE_ACCOUNT,
    accountKey: AZURITE_KEY,
    connectionString: `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};BlobEndpoint=${blobEndpoint};`,
    child,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}
