import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import type { JobDefinition } from "../../src/domain/job.ts";
import type { PowerState, VirtualMachine, VMQuery } from "../../src/domain/vm.ts";
import { HypervisordError, InvalidArgumentError, NotFoundError, UnavailableError, type ErrorCode } from "../../src/errors.ts";
import { diskError } from "../../src/files/disk-error.ts";
import { makeDirectory, publishPartial, reopenPublished, startPartial } from "../../src/files/written-files.ts";
import type { ExportContext, ExportResult, GetVMQuery, Provider } from "../../src/providers/provider.ts";

/**
 * A provider for engine and API tests. The VM reference carries the behaviour:
 *   "web-01?size=1048576&chunk=65536&delayMs=5&failTimes=2&failCode=UNAVAILABLE"
 * size: bytes of the one disk written; chunk/delayMs: pace; failTimes: the first
 * N attempts fail with failCode (UNAVAILABLE is retryable), after failAfter bytes
 * of the disk are written (default 0: before anything; >= size: once the disk is
 * complete under its final name); "noop" finishes at once.
 * The disk is written as <name>-disk-1.img.partial, renamed when complete, and
 * every file and directory is recorded in context.files, as a real provider does.
 * The disk bytes are a pure function of the offset, so a resumed export can be checked.
 */
export interface FakeBehaviour {
  name: string;
  size: number;
  chunk: number;
  delayMs: number;
  failTimes: number;
  failCode: ErrorCode;
  failAfter: number;
}

export function parseFakeVm(vm: string): FakeBehaviour {
  const [name = "", query = ""] = vm.split("?", 2);
  // A fleet VM (named by its inventory path, as a batch's child is) behaves as its folder says.
  const params = new URLSearchParams(`${FLEET_BEHAVIOUR.get(name) ?? ""}&${query}`);
  const num = (key: string, fallback: number) => (params.has(key) ? Number(params.get(key)) : fallback);
  return {
    name,
    size: num("size", 256 * 1024),
    chunk: num("chunk", 64 * 1024),
    delayMs: num("delayMs", 5),
    failTimes: num("failTimes", 0),
    failCode: (params.get("failCode") ?? "UNAVAILABLE") as ErrorCode,
    failAfter: num("failAfter", 0),
  };
}

/** Byte i of every fake disk. */
export function fakeByte(offset: number): number {
  return (offset * 31 + (offset >>> 11)) & 0xff;
}

export function fakeDiskBytes(start: number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) buf[i] = fakeByte(start + i);
  return buf;
}

const INVENTORY: VirtualMachine[] = Array.from({ length: 12 }, (_, i) => {
  const n = String(i + 1).padStart(2, "0");
  const powerState: PowerState = i % 3 === 0 ? "poweredOn" : "poweredOff";
  return {
    name: i < 6 ? `web-${n}` : `db-${n}`,
    path: `/DC0/vm/${i < 6 ? "web" : "db"}/${i < 6 ? "web" : "db"}-${n}`,
    moref: `vm-${100 + i}`,
    uuid: `4210${n}00-0000-4000-8000-0000000000${n}`,
    instanceUuid: `5010${n}00-0000-4000-8000-0000000000${n}`,
    powerState,
    guestOs: "ubuntu64Guest",
    numCpu: 2,
    memoryMb: 4096,
    firmware: i % 2 === 0 ? "bios" : "efi",
    disks: [{ label: "Hard disk 1", capacityBytes: 16 * 1024 ** 3, file: `[datastore1] vm-${n}/vm-${n}.vmdk` }],
    nics: [{ label: "Network adapter 1", network: "VM Network", macAddress: `00:50:56:00:00:${n}` }],
  };
});

/**
 * Folders of a second datacenter for batch tests, listed only when a query asks for a folder under /DC1
 * (so that the unfiltered inventory stays the 12 VMs above). Each folder's VMs share a behaviour:
 *   fleet: 6 VMs, 4 powered on, quick;   mixed: 3 VMs, mixed-02 fails for good;   broken: 2 VMs, both fail for good;
 *   slow: 6 VMs of ~3 s each;   tree: tree-01 and sub/tree-02 (recursive or not);   twins: a/twins-02 and b/twins-02.
 */
const FLEET_FOLDERS: { folder: string; count: number; on: number; behaviour: (i: number) => string }[] = [
  { folder: "fleet", count: 6, on: 4, behaviour: () => "size=65536&chunk=16384&delayMs=2" },
  { folder: "mixed", count: 3, on: 1, behaviour: (i) => (i === 1 ? "size=4096&failTimes=99&failCode=INTERNAL" : "size=4096&delayMs=0") },
  { folder: "broken", count: 2, on: 0, behaviour: () => "size=4096&failTimes=99&failCode=PERMISSION_DENIED" },
  { folder: "slow", count: 6, on: 2, behaviour: () => "size=3000000&chunk=50000&delayMs=50" },
  { folder: "tree", count: 1, on: 0, behaviour: () => "size=4096&delayMs=0" },
  { folder: "tree/sub", count: 1, on: 1, behaviour: () => "size=4096&delayMs=0" },
  // Two VMs of the same name (twins-02) in two subfolders.
  { folder: "twins/a", count: 1, on: 0, behaviour: () => "size=4096&delayMs=0" },
  { folder: "twins/b", count: 1, on: 0, behaviour: () => "size=4096&delayMs=0" },
];

const FLEET: VirtualMachine[] = FLEET_FOLDERS.flatMap(({ folder, count, on }, f) => Array.from({ length: count }, (_, i) => {
  const base = folder.split("/")[0]!;
  const name = `${base}-${String(folder.includes("/") ? i + 2 : i + 1).padStart(2, "0")}`;
  return {
    ...INVENTORY[0]!,
    name,
    path: `/DC1/vm/${folder}/${name}`,
    moref: `vm-${500 + f * 10 + i}`,
    uuid: `4211${f}${i}00-0000-4000-8000-000000000000`,
    instanceUuid: `5011${f}${i}00-0000-4000-8000-000000000000`,
    powerState: (i < on ? "poweredOn" : "poweredOff") as PowerState,
  };
}));

const FLEET_BEHAVIOUR = new Map(FLEET_FOLDERS.flatMap(({ folder, behaviour }) =>
  FLEET.filter((vm) => vm.path.startsWith(`/DC1/vm/${folder}/`) && !vm.path.slice(`/DC1/vm/${folder}/`.length).includes("/"))
    .map((vm, i) => [vm.path, behaviour(i)] as const)));

interface Checkpoint {
  offset: number;
}

export function createFakeProvider(options: { name?: string; resumable?: boolean } = {}): Provider {
  const name = options.name ?? "fake";
  return {
    name,
    resumable: options.resumable ?? true,

    validate(definition: JobDefinition) {
      const behaviour = parseFakeVm(definition.vm);
      if (!Number.isSafeInteger(behaviour.size) || behaviour.size < 0) throw new InvalidArgumentError("definition.vm", "fake: size must be a non-negative integer");
    },

    async listVMs(query: VMQuery) {
      const pattern = query.namePattern && new RegExp(`^${query.namePattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`);
      const inventory = query.folder?.startsWith("/DC1/") ? FLEET : INVENTORY;
      return inventory.filter((vm) =>
        (!pattern || pattern.test(vm.name))
        && (!query.folder || vm.path.startsWith(`${query.folder.replace(/\/$/, "")}/`))
        && (!query.powerState || vm.powerState === query.powerState));
    },

    async getVM(query: GetVMQuery) {
      const vm = [...INVENTORY, ...FLEET].find((v) => [v.name, v.path, v.moref, v.uuid, v.instanceUuid].includes(query.vm));
      if (!vm) throw new NotFoundError(`VM "${query.vm}" not found`);
      return vm;
    },

    async export(definition: JobDefinition, context: ExportContext): Promise<ExportResult> {
      const behaviour = parseFakeVm(definition.vm);
      const { signal, logger } = context;
      const failing = context.attempt <= behaviour.failTimes;
      const failure = () => {
        const message = `fake failure ${context.attempt} of ${behaviour.failTimes}`;
        return behaviour.failCode === "UNAVAILABLE" ? new UnavailableError(message) : new HypervisordError(behaviour.failCode, message);
      };
      if (failing && behaviour.failAfter === 0) throw failure();
      // A VM named by its inventory path (a batch's child) writes under its own name, as a real provider does.
      const base = path.posix.basename(behaviour.name) || "vm";
      const dir = path.join(definition.outputDir, base);
      const file = `${base}-disk-1.img`;
      const target = path.join(dir, file);
      await makeDirectory(dir, context.files);
      await reopenPublished(target, context.files);
      const partial = startPartial(target, context.files);
      let offset = 0;
      const checkpoint = context.loadCheckpoint<Checkpoint>();
      if (checkpoint && fs.existsSync(partial) && fs.statSync(partial).size >= checkpoint.offset) {
        offset = checkpoint.offset;
        fs.truncateSync(partial, offset);
        logger.info({ offset }, "resuming from checkpoint");
      } else {
        fs.writeFileSync(partial, "");
      }
      context.progress({ phase: "downloading", bytesTotal: behaviour.size, bytesDone: offset, filesTotal: 1, filesDone: 0, currentFile: file });
      const fd = fs.openSync(partial, "r+");
      try {
        while (offset < behaviour.size) {
          if (signal.aborted) throw signal.reason;
          if (failing && offset >= behaviour.failAfter) throw failure();
          const length = Math.min(behaviour.chunk, behaviour.size - offset);
          try {
            fs.writeSync(fd, fakeDiskBytes(offset, length), 0, length, offset);
            fs.fsyncSync(fd);
          } catch (err) {
            throw diskError(err, "writing", partial);
          }
          offset += length;
          context.saveCheckpoint({ offset } satisfies Checkpoint);
          context.progress({ bytesDone: offset });
          if (behaviour.delayMs > 0) await sleep(behaviour.delayMs, signal);
        }
      } finally {
        fs.closeSync(fd);
      }
      await publishPartial(target, context.files);
      if (failing) throw failure();
      const sha256 = createHash("sha256").update(fs.readFileSync(target)).digest("hex");
      context.progress({ filesDone: 1, currentFile: "" });
      logger.info({ file, bytes: behaviour.size }, "fake disk written");
      return { outputDir: dir, files: [{ path: file, size: behaviour.size, sha256 }], warnings: [] };
    },
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

export function fakeProviders(): Provider[] {
  return [createFakeProvider(), createFakeProvider({ name: "fake-noresume", resumable: false })];
}
