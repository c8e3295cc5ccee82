import { createHash } from "node:crypto";
import { InvalidArgumentError } from "../errors.ts";
import { intIn } from "./job-definition.ts";

/** A request's page_size: 0 asks for `fallback`; anything else must be within 1..max (INVALID_ARGUMENT on page_size). */
export function pageSize(requested: number, fallback: number, max = 1000): number {
  return requested === 0 ? fallback : intIn(requested, 1, max, "page_size");
}

/** Opaque keyset cursor, bound to the query it came from so that it cannot be replayed against another filter. */
export function encodePageToken(cursor: number, query: unknown): string {
  return Buffer.from(JSON.stringify({ c: cursor, q: queryHash(query) })).toString("base64url");
}

export function decodePageToken(token: string, query: unknown): number | undefined {
  if (!token) return undefined;
  try {
    const value = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as { c?: unknown; q?: unknown };
    if (Number.isSafeInteger(value.c) && value.q === queryHash(query)) return value.c as number;
  } catch {
    // Falls through to the error below: a token that does not decode is as invalid as one from another query.
  }
  throw new InvalidArgumentError("page_token", "invalid, or from a query with different filters");
}

function queryHash(query: unknown): string {
  return createHash("sha256").update(JSON.stringify(query)).digest("base64url").slice(0, 12);
}

/** An opaque token for a string keyset cursor (an id the previous page ended with). */
export function pageTokenOf(cursor: string | undefined): string {
  return cursor === undefined ? "" : Buffer.from(JSON.stringify({ k: cursor })).toString("base64url");
}

/** The cursor in a token made by pageTokenOf; undefined for the first page. */
export function pageOf(token: string, field: string): string | undefined {
  if (!token) return undefined;
  try {
    const value = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as { k?: unknown };
    if (typeof value.k === "string") return value.k;
  } catch {
    // Reported below.
  }
  throw new InvalidArgumentError(field, "invalid page token");
}
