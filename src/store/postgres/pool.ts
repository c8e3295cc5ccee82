import pg from "pg";

const INT8 = 20;
const NUMERIC = 1700;

/**
 * A connection pool whose BIGINT (times in ms, sizes, sequence numbers) and NUMERIC values come back as JS numbers,
 * as they do from SQLite: every one of them fits in a double. Set on this pool only, not on pg's global parsers.
 */
export function createPool(url: string, options: { max?: number; applicationName?: string } = {}): pg.Pool {
  const parseNumber = (value: string) => Number(value);
  return new pg.Pool({
    connectionString: url,
    max: options.max ?? 10,
    application_name: options.applicationName ?? "hypervisord",
    connectionTimeoutMillis: 5_000,
    types: {
      getTypeParser: ((oid: number, format?: string) =>
        oid === INT8 || oid === NUMERIC ? parseNumber : pg.types.getTypeParser(oid, format as "text")) as typeof pg.types.getTypeParser,
    },
  });
}
