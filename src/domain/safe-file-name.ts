const UNSAFE = /[\u0000-\u001f\u007f/\\:*?"<>|]/g;
const RESERVED = /^(con|prn|aux|nul|com\d|lpt\d)(\..*)?$/i;
const MAX_BYTES = 180;

/**
 * A VM name made safe as a file and directory name: separators, reserved
 * characters and control characters become "_", no leading dots (so no ".."),
 * no reserved device names, at most 180 bytes of UTF-8. Never empty.
 */
export function safeFileName(name: string): string {
  let safe = name.normalize("NFC").replace(UNSAFE, "_").replace(/^[.\s]+/, "").replace(/[.\s]+$/, "");
  if (RESERVED.test(safe)) safe = `_${safe}`;
  while (Buffer.byteLength(safe) > MAX_BYTES) safe = Array.from(safe).slice(0, -1).join("");
  return safe || "vm";
}
