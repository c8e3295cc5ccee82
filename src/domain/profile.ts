import type { JobDefinition } from "./job.ts";

/** The JobDefinition fields a profile may set. */
export const PROFILE_FIELDS = [
  "format", "compress", "compressionLevel", "convertTo", "parallelDownloads", "bandwidthLimit", "verify", "generateManifest",
  "manifestAlgorithm", "cleanupOvf", "removeDevices", "includeImageFiles", "powerOff", "priority", "outputDir", "labels",
] as const satisfies readonly (keyof JobDefinition)[];

export type ProfileSettings = Partial<Pick<JobDefinition, (typeof PROFILE_FIELDS)[number]>>;

export interface Profile {
  name: string;
  description: string;
  settings: ProfileSettings;
  source: "api" | "config";
  createTime: number;
  updateTime: number;
}
