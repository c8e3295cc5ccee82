// A job log record as a line to read: the structured fields after the message as key=value, nested
// objects flattened with dots, fractions rounded, strings quoted only where a space or "=" would make
// the line ambiguous. The raw JSON stays available (the line's tooltip) for the exact values.

/** Digits after the point for non-integral numbers: enough for a rate or a ratio, not 17 digits of noise. */
const FRACTION_DIGITS = 2;

export function formatLogValue(value: unknown): string {
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : String(Number(value.toFixed(FRACTION_DIGITS)));
  if (typeof value === "string") return value === "" || /[\s="]/.test(value) ? JSON.stringify(value) : value;
  if (value === null || typeof value === "boolean") return String(value);
  return JSON.stringify(value);
}

/** [key, value] pairs of a record's fields_json, nested objects flattened ("err.code"); [] for "" or "{}". */
export function logFields(fieldsJson: string): [string, string][] {
  if (!fieldsJson) return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(fieldsJson);
  } catch {
    return [["fields", fieldsJson]]; // not JSON (a daemon bug): shown as it came rather than lost
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return [["fields", formatLogValue(parsed)]];
  const pairs: [string, string][] = [];
  const walk = (prefix: string, object: object) => {
    for (const [key, value] of Object.entries(object)) {
      const name = prefix ? `${prefix}.${key}` : key;
      if (typeof value === "object" && value !== null && !Array.isArray(value)) walk(name, value);
      else pairs.push([name, formatLogValue(value)]);
    }
  };
  walk("", parsed);
  return pairs;
}

/** "bytes=4194304 file=disk-1.img": the fields as one readable string. */
export function formatLogFields(fieldsJson: string): string {
  return logFields(fieldsJson).map(([key, value]) => `${key}=${value}`).join(" ");
}
