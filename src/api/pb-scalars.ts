import { create } from "@bufbuild/protobuf";
import { TimestampSchema, timestampFromMs, type Timestamp } from "@bufbuild/protobuf/wkt";

/** A time in ms as a Timestamp; undefined stays unset. */
export const timestampOf = (ms: number | undefined) => (ms === undefined ? undefined : timestampFromMs(ms));

/** Like timestampFromMs, for times with a fractional millisecond (update times): nanos must be an integer on the wire. */
export function preciseTimestamp(ms: number): Timestamp {
  const seconds = Math.floor(ms / 1000);
  return create(TimestampSchema, { seconds: BigInt(seconds), nanos: Math.min(999_999_999, Math.round((ms - seconds * 1000) * 1e6)) });
}

/** A count or a size as an int64 field. */
export const int64 = (n: number) => BigInt(Math.round(n));
