import { createHash } from "node:crypto";
import type { VirtualMachine } from "./vm.ts";

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

/**
 * The directory names of the VMs of one batch (or one batch run of a schedule): the VM's name made safe, and, when two selected VMs have the
 * same name (in different folders), the later ones in resolution order also get 8 hex of their inventory
 * path, so that they never write into each other's directory and keep their own key from run to run.
 */
export function createVmKeys(): (vm: Pick<VirtualMachine, "name" | "path">) => string {
  const taken = new Map<string, string>();
  return (vm) => {
    let key = safeFileName(vm.name);
    const owner = taken.get(key);
    if (owner !== undefined && owner !== vm.path) key = safeFileName(`${vm.name}-${createHash("sha256").update(vm.path).digest("hex").slice(0, 8)}`);
    taken.set(key, vm.path);
    return key;
  };
}
