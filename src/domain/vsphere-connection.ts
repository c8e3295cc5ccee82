import { InvalidArgumentError } from "../errors.ts";
import type { VSphereConnection } from "./job.ts";

/**
 * The vSphere connection a request uses: its own when it names a URL, else the daemon's default (vsphere.url
 * in the config). With neither, the request is refused on `<field>.url`: at submission (api) and again when a
 * job or a listing runs (the vSphere provider), with the same words.
 */
export function vsphereConnectionOf(given: VSphereConnection | undefined, fallback: VSphereConnection | undefined, field: string): VSphereConnection {
  if (given?.url) return given;
  if (fallback) return fallback;
  throw new InvalidArgumentError(`${field}.url`, "required: the daemon has no default vSphere connection configured");
}
