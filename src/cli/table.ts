/** Aligned plain-text tables: no borders, two spaces between columns, the last column not padded. */

export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [headers, ...rows];
  const widths = headers.map((_, i) => Math.max(...all.map((row) => width(row[i] ?? ""))));
  return all
    .map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : pad(cell, widths[i]!))).join("  ").trimEnd())
    .join("\n");
}

/** "Key:  value" lines, keys aligned; rows with an undefined value are left out. */
export function keyValues(rows: readonly (readonly [string, string | undefined])[]): string {
  const shown = rows.filter((row): row is [string, string] => row[1] !== undefined);
  const keyWidth = Math.max(...shown.map(([key]) => key.length + 1));
  return shown.map(([key, value]) => `${pad(`${key}:`, keyWidth)}  ${value}`).join("\n");
}

/** Visible width: ANSI colour codes take no room. */
function width(text: string): number {
  return text.replace(/\x1b\[[0-9;]*m/g, "").length;
}

function pad(text: string, to: number): string {
  return text + " ".repeat(Math.max(0, to - width(text)));
}
