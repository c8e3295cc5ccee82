import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Command } from "commander";
import type { VSphereConnectionSchema } from "../../gen/hypervisord/v1/job_pb.js";
import { UsageError } from "./errors.ts";
import { readAll, type CliIo } from "./io.ts";

export interface ConnectionOptions {
  provider?: string;
  vsphereUrl?: string;
  username?: string;
  password?: string;
  passwordStdin?: boolean;
  insecureVsphere?: boolean;
  thumbprint?: string;
}

/** The options that say which hypervisor to talk to (export, vms, schedules create). */
export function addConnectionOptions(command: Command): Command {
  return command
    .option("--provider <name>", "provider (daemon default: vsphere)")
    .option("--vsphere-url <url>", "vCenter/ESXi SDK URL (default: the daemon's configured connection)")
    .option("--username <user>", "vSphere user")
    .option("--password <password>", "vSphere password (visible to other local users: prefer --password-stdin)")
    .option("--password-stdin", "read the vSphere password from stdin")
    .option("--insecure-vsphere", "do not verify the vSphere certificate")
    .option("--thumbprint <fingerprint>", "pin the vSphere certificate's SHA-1 or SHA-256 fingerprint");
}

/** The VSphereConnection of the options, or undefined when none was given (the daemon's default is used). */
export async function connectionOf(opts: ConnectionOptions, io: CliIo): Promise<MessageInitShape<typeof VSphereConnectionSchema> | undefined> {
  if (opts.password !== undefined && opts.passwordStdin) throw new UsageError("--password and --password-stdin are mutually exclusive");
  let password = opts.password ?? "";
  if (opts.passwordStdin) {
    password = (await readAll(io.stdin)).replace(/\r?\n$/, "");
    if (!password) throw new UsageError("--password-stdin: stdin was empty");
    io.secrets.add(password);
  }
  if (!opts.vsphereUrl && !opts.username && !password && !opts.insecureVsphere && !opts.thumbprint) return undefined;
  return {
    url: opts.vsphereUrl ?? "",
    username: opts.username ?? "",
    password,
    insecure: opts.insecureVsphere ?? false,
    thumbprint: opts.thumbprint ?? "",
  };
}
