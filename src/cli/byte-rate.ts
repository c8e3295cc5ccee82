/**
 * `--bandwidth-limit` and a job file's `bandwidth_limit` as people write them: "100MiB/s", "50M", "1.5GB/s",
 * "1048576". JobDefinition.bandwidth_limit is bytes per second (int64, 0 = unlimited).
 */

/** K, M, G, T are decimal (as in "100 MB/s" on a data sheet), Ki, Mi, Gi, Ti binary; a trailing B and /s are optional. */
const UNITS: Record<string, number> = {
  "": 1, k: 1e3, m: 1e6, g: 1e9, t: 1e12,
  ki: 2 ** 10, mi: 2 ** 20, gi: 2 ** 30, ti: 2 ** 40,
};

const RATE = /^(\d+(?:\.\d+)?)\s*(k|m|g|t|ki|mi|gi|ti)?(b)?(?:\/s)?$/i;

/** Bytes per second, rounded down to whole bytes; throws a message saying what is accepted. */
export function parseByteRate(text: string): bigint {
  const match = RATE.exec(text.trim());
  // A bare unit with no B is fine ("50M"); "100Mb/s" (bits) is refused rather than read as bytes.
  if (!match || (match[3] === "b")) {
    throw new Error(`expected bytes per second such as 100MiB/s, 50MB/s, 1.5GiB or 1048576 (0: unlimited; B is bytes, b would be bits), got "${text}"`);
  }
  const bytes = Math.floor(Number(match[1]) * UNITS[(match[2] ?? "").toLowerCase()]!);
  if (!Number.isSafeInteger(bytes)) throw new Error(`"${text}" is too large`);
  return BigInt(bytes);
}
