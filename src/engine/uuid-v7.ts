import { randomUUID } from "node:crypto";

/**
 * A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds first, so that job ids sort
 * by creation and new rows land at the end of the id index instead of at random.
 * Made from a v4 UUID, whose random bits come from Node's pool (randomBytes per id cost a
 * measurable part of a SubmitJob): the first 48 bits become the time, the version nibble 7;
 * the variant bits are the same in both, and the 74 random bits v7 keeps stay random.
 */
export function uuidv7(now = Date.now()): string {
  const random = randomUUID();
  const time = now.toString(16).padStart(12, "0");
  return `${time.slice(0, 8)}-${time.slice(8, 12)}-7${random.slice(15)}`;
}
