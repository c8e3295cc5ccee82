import { createHash, type Hash } from "node:crypto";

/** The hex digests of a downloaded file. */
export interface Digests {
  sha256: string;
  sha1?: string;
}

export interface Hasher {
  update(chunk: Buffer): void;
  digest(): Digests;
}

/** SHA-256 always, SHA-1 beside it when asked: both fed the same chunks as they are written. */
export function createHasher(withSha1: boolean): Hasher {
  const sha256: Hash = createHash("sha256");
  const sha1: Hash | undefined = withSha1 ? createHash("sha1") : undefined;
  return {
    update(chunk) {
      sha256.update(chunk);
      sha1?.update(chunk);
    },
    digest: () => ({ sha256: sha256.digest("hex"), ...(sha1 ? { sha1: sha1.digest("hex") } : {}) }),
  };
}
