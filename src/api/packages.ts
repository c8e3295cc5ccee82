import fs from "node:fs";
import path from "node:path";
import type { HypervisordService } from "../../gen/hypervisord/v1/service_pb.js";
import { HypervisordError, InvalidArgumentError, quoteInput, toHypervisordError } from "../errors.ts";
import { isInside } from "../files/fs-utils.ts";
import { extractOva } from "../package/extract-ova.ts";
import { validateOva } from "../package/validate-ova.ts";
import type { ServiceHandlers } from "../rpc/handlers.ts";
import { verifyArtifactManifest } from "../stages/artifact-manifest/verify.ts";
import { resolveOutputDir } from "./output-dir.ts";

type PackageHandlers = Pick<ServiceHandlers<typeof HypervisordService>, "validateOva" | "extractOva" | "verifyManifest">;

/**
 * The RPCs on finished packages: ValidateOva, ExtractOva, VerifyManifest. Every path, and every file a
 * manifest points at, must lie under the allowed output roots (the daemon reads nothing else for a caller).
 */
export function createPackageHandlers(roots: readonly string[], realRoots: readonly string[]): PackageHandlers {
  const inRoots = (requested: string, field: string) => {
    if (!requested.trim()) throw new InvalidArgumentError(field, "required");
    return resolveOutputDir(requested.trim(), roots, field, [...realRoots]);
  };
  const mayRead = (file: string) => {
    const real = fs.existsSync(file) ? fs.realpathSync(file) : file;
    return realRoots.some((root) => isInside(real, root));
  };
  const bigint = <T extends { size: number }>(e: T) => ({ ...e, size: BigInt(e.size) });

  /**
   * A relative path is resolved against the first output root (the daemon cannot know the caller's directory):
   * when nothing is found there, the error says so, as the caller may have meant a path relative to where they
   * stand. (A relative path that leads outside the roots is already shown resolved.)
   */
  const explained = async <T>(requested: string, field: string, call: () => Promise<T>): Promise<T> => {
    try {
      return await call();
    } catch (err) {
      const e = toHypervisordError(err, `reading ${quoteInput(requested)}`);
      if (e.code !== "NOT_FOUND" || !requested.trim() || path.isAbsolute(requested.trim())) throw err;
      const note = ` (${field} ${quoteInput(requested.trim())} is relative: resolved against the output root ${roots[0]}, not the caller's directory; pass an absolute path)`;
      throw new HypervisordError(e.code, e.message + note, { cause: e, retryable: e.retryable });
    }
  };

  return {
    validateOva(request, context) {
      return explained(request.path, "path", async () => {
        const result = await validateOva(inRoots(request.path, "path"), { signal: context.signal });
        return { ...result, entries: result.entries.map(bigint) };
      });
    },

    extractOva(request, context) {
      return explained(request.path, "path", async () => {
        const file = inRoots(request.path, "path");
        const outputDir = inRoots(request.outputDir, "output_dir");
        const { files } = await extractOva(file, outputDir, { signal: context.signal });
        return { outputDir, files: files.map(bigint) };
      });
    },

    verifyManifest(request, context) {
      return explained(request.path, "path", async () => {
        const result = await verifyArtifactManifest(inRoots(request.path, "path"), { signal: context.signal, mayRead });
        return {
          valid: result.valid,
          disks: result.disks.map((d) => ({ id: d.id, path: d.path, expected: d.expected, actual: d.actual ?? "", ok: d.ok, problem: d.problem ?? "" })),
          problems: result.problems,
        };
      });
    },
  };
}
