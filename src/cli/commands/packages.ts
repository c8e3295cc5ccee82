import fs from "node:fs";
import nodePath from "node:path";
import { Command } from "commander";
import { ExtractOvaResponseSchema, ValidateOvaResponseSchema, VerifyManifestResponseSchema, type OvaEntry } from "../../../gen/hypervisord/v1/service_pb.js";
import { action, type Cli } from "../context.ts";
import { bytes } from "../format.ts";
import { examples } from "../help-examples.ts";
import type { CliIo } from "../io.ts";
import { table } from "../table.ts";

function entriesTable(entries: readonly OvaEntry[]): string {
  return table(["ENTRY", "SIZE", "SHA256"], entries.map((e) => [e.name, bytes(e.size), e.sha256 || "-"]));
}

/**
 * A daemon on this host sees the caller's files: a relative path that exists from the current directory is sent
 * absolute, so it means what the user typed. Otherwise (a remote daemon, or no such file here) it goes as typed,
 * and the daemon resolves it against its first output root (and says so when that fails).
 */
function callerPath(cli: Cli, file: string): string {
  if (nodePath.isAbsolute(file) || !fs.existsSync(file)) return file;
  const server = cli.options.server;
  const host = URL.canParse(server) && server.includes("://") ? new URL(server).hostname : new URL(`http://${server}`).hostname;
  return /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])$/.test(host) ? nodePath.resolve(file) : file;
}

/** `ova validate|extract` and `manifest verify`: packages on the daemon's disk, checked by the daemon. */
export function packageCommands(io: CliIo): Command[] {
  const ova = new Command("ova").description("OVA packages under the daemon's output roots");

  ova.addCommand(new Command("validate")
    .description("check an .ova or .ova.gz: descriptor first, every file present with its size, .mf digests; exit 1 when invalid")
    .argument("<path>", "path on the daemon's host (relative: from here when the daemon is on this host and the file is here, else under its first output root)")
    .addHelpText("after", examples("hyperctl ova validate nightly/web-01/web-01.ova", "hyperctl ova validate /srv/exports/web-01.ova.gz -q   # only the problems"))
    .action(action(io, async (cli, path: string) => {
      const r = await cli.client().validateOva({ path: callerPath(cli, path) });
      cli.out.result(ValidateOvaResponseSchema, r, () => {
        if (cli.out.quiet) return r.valid ? undefined : r.problems.join("\n");
        const head = `${path}: ${r.valid ? "valid" : "INVALID"}${r.compressed ? " (gzip)" : ""}`;
        const problems = r.problems.map((p) => `  problem: ${p}`).join("\n");
        return [head, problems, r.entries.length ? entriesTable(r.entries) : ""].filter(Boolean).join("\n");
      });
      return r.valid ? 0 : 1;
    })));

  ova.addCommand(new Command("extract")
    .description("extract an .ova or .ova.gz into a directory on the daemon's host")
    .argument("<path>", "the OVA")
    .argument("<dir>", "directory to extract into (created; relative: under the first output root)")
    .addHelpText("after", examples("hyperctl ova extract nightly/web-01/web-01.ova restored/web-01"))
    .action(action(io, async (cli, path: string, outputDir: string) => {
      const r = await cli.client().extractOva({ path: callerPath(cli, path), outputDir });
      cli.out.result(ExtractOvaResponseSchema, r, () => (cli.out.quiet ? r.outputDir : `extracted into ${r.outputDir}\n${entriesTable(r.files)}`));
    })));

  const manifest = new Command("manifest").description("artifact manifests (artifact-manifest.json)");
  manifest.addCommand(new Command("verify")
    .description("re-hash the disks an artifact-manifest.json lists; exit 1 on a mismatch")
    .argument("<path>", "the artifact-manifest.json on the daemon's host")
    .addHelpText("after", examples("hyperctl manifest verify nightly/web-01/artifact-manifest.json", "hyperctl manifest verify /srv/exports/web-01/artifact-manifest.json -o json"))
    .action(action(io, async (cli, path: string) => {
      const r = await cli.client().verifyManifest({ path: callerPath(cli, path) });
      cli.out.result(VerifyManifestResponseSchema, r, () => {
        if (cli.out.quiet) return r.valid ? undefined : r.problems.join("\n");
        const head = `${path}: ${r.valid ? "valid" : "INVALID"}`;
        const problems = r.problems.map((p) => `  problem: ${p}`).join("\n");
        const disks = table(["DISK", "OK", "PATH", "PROBLEM"], r.disks.map((d) => [d.id, d.ok ? "yes" : "NO", d.path, d.problem]));
        return [head, problems, r.disks.length ? disks : ""].filter(Boolean).join("\n");
      });
      return r.valid ? 0 : 1;
    })));

  return [ova, manifest];
}
