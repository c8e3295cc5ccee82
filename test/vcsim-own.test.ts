// The project's own vCenter simulator (tools/vcsim) checked over the wire, with the project's vim25 client and
// plain HTTPS: the export lease's states, timeout and end, its URLs (bytes, Range, HEAD, 404), the manifest's
// digests against the bytes served, snapshot-time content and ExportSnapshot, CreateDescriptor, the session check
// on /folder, and each fault switch. What the vSphere tests rely on is pinned here, whichever simulator they run on.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import https from "node:https";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { retrieveOne } from "../src/providers/vsphere/property-collector.ts";
import { openSession, type VSphereSession } from "../src/providers/vsphere/session.ts";
import { runTask } from "../src/providers/vsphere/tasks.ts";
import { child, children, moRefOf, textOf, type MoRef } from "../src/providers/vsphere/xml.ts";
import { buildVcsim, startVcsim, type Vcsim, type VcsimVm } from "./support/vcsim.ts";
import { waitFor } from "./support/wait-for.ts";

let skipReason: string | undefined;
const sims: Vcsim[] = [];
const sessions: VSphereSession[] = [];

before(async () => {
  skipReason = (await buildVcsim()).reason;
  if (skipReason) console.log(`skipping the simulator's own tests: ${skipReason}`);
});

after(async () => {
  for (const session of sessions) await session.close().catch(() => undefined);
  for (const sim of sims) await sim.stop();
});

async function simulator(args: string[] = [], env: Record<string, string> = {}): Promise<{ sim: Vcsim; session: VSphereSession }> {
  const sim = await startVcsim(args, env);
  sims.push(sim);
  const session = await openSession({ url: sim.url, username: "user", password: "pass", insecure: true, thumbprint: "" },
    { maxConnections: 2, logger: pino({ level: "silent" }) }, AbortSignal.timeout(10_000));
  sessions.push(session);
  return { sim, session };
}

const signal = () => AbortSignal.timeout(15_000);
const sha = (algorithm: string, data: Buffer) => createHash(algorithm).update(data).digest("hex");
const vmRef = (vm: VcsimVm): MoRef => ({ type: "VirtualMachine", value: vm.moref });

function fill(file: string, size: number): Buffer {
  const bytes = randomBytes(size);
  fs.writeFileSync(file, bytes);
  return bytes;
}

interface Fetched {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** The connection was closed before the response was whole. */
  cut: boolean;
}

/** GET (or HEAD) over HTTPS, unverified as the simulator's certificate is self-signed; a cut response is returned, not thrown. */
function fetchRaw(url: string, options: { method?: string; headers?: Record<string, string> } = {}): Promise<Fetched> {
  return new Promise((resolve, reject) => {
    const request = https.request(url, { method: options.method ?? "GET", headers: options.headers, rejectUnauthorized: false, agent: false }, (response) => {
      const chunks: Buffer[] = [];
      const done = (cut: boolean) => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks), cut });
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("end", () => done(!response.complete));
      response.on("aborted", () => done(true));
      response.on("error", () => done(true));
    });
    request.on("error", reject);
    request.end();
  });
}

interface Lease {
  ref: MoRef;
  state: string;
  devices: { key: string; url: string; disk: boolean; targetId: string }[];
  timeout: number;
  error: string;
}

async function leaseOf(session: VSphereSession, ref: MoRef): Promise<Lease> {
  const content = await retrieveOne(session, ref, ["state", "info", "error"], signal());
  const info = content?.props.get("info");
  const host = new URL(session.soap.url).host;
  return {
    ref,
    state: content?.props.get("state")?.text ?? "gone",
    devices: children(info, "deviceUrl").map((d) => ({
      key: textOf(d, "key"), url: textOf(d, "url").replace("://*/", `://${host}/`), disk: textOf(d, "disk") === "true", targetId: textOf(d, "targetId"),
    })),
    timeout: Number(textOf(info, "leaseTimeout") || 0),
    error: child(content?.props.get("error"), "fault")?.type ?? "",
  };
}

async function exportLease(session: VSphereSession, method: "ExportVm" | "ExportSnapshot", target: MoRef): Promise<MoRef> {
  return moRefOf(child(await session.call(method, [["_this", target]], signal()), "returnval"))!;
}

const readyLease = (session: VSphereSession, ref: MoRef) => waitFor("the lease to be ready", async () => {
  const lease = await leaseOf(session, ref);
  return lease.state === "ready" && lease;
});

async function manifestOf(session: VSphereSession, lease: MoRef) {
  const response = await session.call("HttpNfcLeaseGetManifest", [["_this", lease]], signal());
  return children(response, "returnval").map((e) => ({
    key: textOf(e, "key"), sha1: textOf(e, "sha1"), checksum: textOf(e, "checksum"), checksumType: textOf(e, "checksumType"), size: Number(textOf(e, "size")), disk: textOf(e, "disk") === "true",
  }));
}

/** The fault type a call answers (it must fail). */
async function faultOf(call: Promise<unknown>): Promise<string> {
  const err = await call.then(() => undefined, (e: unknown) => e as { faultType?: string });
  assert.ok(err, "the call failed");
  return err.faultType ?? String(err);
}

/** The fault type a task ended with ("" when it succeeded). */
async function taskFault(session: VSphereSession, method: string, target: MoRef, params: [string, unknown][] = []): Promise<string> {
  return runTask(session, method, target, signal(), params as never).then(() => "", (e: { faultType?: string }) => e.faultType ?? String(e));
}

async function snapshotsOf(session: VSphereSession, vm: VcsimVm): Promise<{ name: string; ref: MoRef }[]> {
  const info = (await retrieveOne(session, vmRef(vm), ["snapshot"], signal()))?.props.get("snapshot");
  const out: { name: string; ref: MoRef }[] = [];
  const walk = (trees: ReturnType<typeof children>) => trees.forEach((t) => {
    out.push({ name: textOf(t, "name"), ref: { type: "VirtualMachineSnapshot", value: moRefOf(children(t, "snapshot")[0])!.value } });
    walk(children(t, "childSnapshotList"));
  });
  walk(children(info, "rootSnapshotList"));
  return out;
}

const snapFiles = (vm: VcsimVm) => fs.readdirSync(path.dirname(vm.disks[0]!.file)).filter((f) => f.includes("-snap-")).sort();

describe("export leases", () => {
  test("ExportVm: initializing for VCSIM_LEASE_INIT_MS, then ready; each URL serves its file, the manifest has its size, SHA-1 and SHA-256; complete ends it", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const { sim, session } = await simulator([], { VCSIM_LEASE_INIT_MS: "800" });
    const vm = sim.vms[0]!;
    const disk = fill(vm.disks[0]!.file, 300_001);
    const nvram = fill(path.join(path.dirname(vm.disks[0]!.file), `${vm.name}.nvram`), 8192);
    const began = Date.now();
    const ref = await exportLease(session, "ExportVm", vmRef(vm));
    assert.equal((await leaseOf(session, ref)).state, "initializing");
    const lease = await readyLease(session, ref);
    assert.ok(Date.now() - began >= 700, `ready after ${Date.now() - began} ms`);
    assert.equal(lease.timeout, 300, "a host's default lease timeout");
    assert.deepEqual(lease.devices.map((d) => [d.disk, d.targetId]), [[true, "disk-0.vmdk"], [false, `${vm.name}.nvram`]]);
    assert.match(lease.devices[0]!.key, new RegExp(`^/${vm.moref}/\\w+Controller\\d+:\\d+$`));
    assert.equal(lease.devices[1]!.key, `/${vm.moref}/nvram`);
    assert.equal(new URL(lease.devices[0]!.url).pathname, `/nfc/export/${ref.value}/disk-0.vmdk`);

    const manifest = await manifestOf(session, ref);
    for (const [device, source] of [[lease.devices[0]!, disk], [lease.devices[1]!, nvram]] as const) {
      const got = await fetchRaw(device.url);
      assert.equal(got.status, 200);
      assert.equal(got.headers["content-length"], String(source.length));
      assert.ok(got.body.equals(source), `${device.targetId}: the file's bytes`);
      const entry = manifest.find((m) => m.key === device.key)!;
      assert.deepEqual(entry, { key: device.key, sha1: sha("sha1", got.body), checksum: sha("sha256", got.body), checksumType: "sha256", size: source.length, disk: device.disk });
    }
    const range = await fetchRaw(lease.devices[0]!.url, { headers: { range: "bytes=1000-1999" } });
    assert.equal(range.status, 206);
    assert.equal(range.headers["content-range"], `bytes 1000-1999/${disk.length}`);
    assert.ok(range.body.equals(disk.subarray(1000, 2000)));
    const tail = await fetchRaw(lease.devices[0]!.url, { headers: { range: "bytes=300000-" } });
    assert.deepEqual([tail.status, [...tail.body]], [206, [disk[300_000]]]);
    const ranges = await fetchRaw(lease.devices[0]!.url, { headers: { range: "bytes=0-9,100-109" } });
    assert.equal(ranges.status, 206);
    assert.match(String(ranges.headers["content-type"]), /^multipart\/byteranges; boundary=/);
    assert.ok(ranges.body.includes(disk.subarray(0, 10)) && ranges.body.includes(disk.subarray(100, 110)), "both ranges, as parts");
    const head = await fetchRaw(lease.devices[0]!.url, { method: "HEAD" });
    assert.deepEqual([head.status, head.headers["content-length"], head.body.length], [200, String(disk.length), 0]);

    await session.call("HttpNfcLeaseProgress", [["_this", ref], ["percent", 50]], signal());
    await session.call("HttpNfcLeaseComplete", [["_this", ref]], signal());
    assert.equal((await leaseOf(session, ref)).state, "done");
    assert.equal((await fetchRaw(lease.devices[0]!.url, { method: "HEAD" })).status, 404, "an ended lease's URLs are gone");
    assert.equal(await faultOf(session.call("HttpNfcLeaseComplete", [["_this", ref]], signal())), "InvalidState");
  });

  test("a powered-on VM cannot be exported (InvalidPowerState); an aborted lease is in error and serves nothing", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const { sim, session } = await simulator(["-autostart=true"]);
    assert.equal(await faultOf(exportLease(session, "ExportVm", vmRef(sim.vms[0]!))), "InvalidPowerState");
    const vm = sim.vms[1]!;
    await runTask(session, "PowerOffVM_Task", vmRef(vm), signal());
    const lease = await readyLease(session, await exportLease(session, "ExportVm", vmRef(vm)));
    assert.equal((await fetchRaw(lease.devices[0]!.url, { method: "HEAD" })).status, 200);
    await session.call("HttpNfcLeaseAbort", [["_this", lease.ref]], signal());
    assert.equal((await leaseOf(session, lease.ref)).state, "error");
    assert.equal((await fetchRaw(lease.devices[0]!.url)).status, 404);
    assert.equal(await faultOf(session.call("HttpNfcLeaseAbort", [["_this", lease.ref]], signal())), "InvalidState");
    assert.equal((await fetchRaw(lease.devices[0]!.url.replace(lease.ref.value, "0".repeat(32)))).status, 404, "an unknown lease id");
  });

  test("VCSIM_LEASE_TIMEOUT_S: kept alive by HttpNfcLeaseProgress, else in error (Timedout), its download under way stopped", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const { sim, session } = await simulator([], { VCSIM_LEASE_TIMEOUT_S: "2", VCSIM_EXPORT_RATE: "100000" });
    const [kept, dropped] = [sim.vms[0]!, sim.vms[1]!];
    fill(kept.disks[0]!.file, 1000);
    fill(dropped.disks[0]!.file, 1_000_000);
    const keptLease = await readyLease(session, await exportLease(session, "ExportVm", vmRef(kept)));
    const droppedLease = await readyLease(session, await exportLease(session, "ExportVm", vmRef(dropped)));
    assert.equal(keptLease.timeout, 2);
    const keepAlive = setInterval(() => void session.call("HttpNfcLeaseProgress", [["_this", keptLease.ref], ["percent", 10]], signal()).catch(() => undefined), 500);
    try {
      const began = Date.now();
      // 1 MB at 100 kB/s would take 10 s: the lease times out after 2 s and the download stops there.
      const download = await fetchRaw(droppedLease.devices[0]!.url);
      const took = Date.now() - began;
      assert.ok(download.cut && download.body.length < 500_000, `cut after ${download.body.length} bytes`);
      assert.ok(took >= 1500 && took < 6000, `stopped after ${took} ms`);
      const ended = await leaseOf(session, droppedLease.ref);
      assert.deepEqual([ended.state, ended.error], ["error", "Timedout"]);
      assert.equal((await fetchRaw(droppedLease.devices[0]!.url, { method: "HEAD" })).status, 404);
      assert.equal(await faultOf(session.call("HttpNfcLeaseProgress", [["_this", droppedLease.ref], ["percent", 50]], signal())), "InvalidState");
      assert.equal((await leaseOf(session, keptLease.ref)).state, "ready", "the lease kept alive is still ready");
    } finally {
      clearInterval(keepAlive);
    }
  });

  test("VCSIM_EXPORT_RATE slows each download to its rate; VCSIM_EXPORT_DROP_AFTER cuts the first GET of each file after that many bytes", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const { sim, session } = await simulator([], { VCSIM_EXPORT_RATE: "200000", VCSIM_EXPORT_DROP_AFTER: "150000" });
    const vm = sim.vms[0]!;
    const disk = fill(vm.disks[0]!.file, 400_000);
    const lease = await readyLease(session, await exportLease(session, "ExportVm", vmRef(vm)));
    const first = await fetchRaw(lease.devices[0]!.url);
    assert.equal(first.status, 200);
    assert.ok(first.cut, "the first GET was cut");
    assert.ok(first.body.equals(disk.subarray(0, 150_000)), `the first GET sent exactly 150000 bytes (${first.body.length})`);
    const began = Date.now();
    const rest = await fetchRaw(lease.devices[0]!.url, { headers: { range: "bytes=150000-" } });
    const took = Date.now() - began;
    assert.deepEqual([rest.status, rest.cut], [206, false]);
    assert.ok(Buffer.concat([first.body, rest.body]).equals(disk), "resumed with Range to the whole file");
    assert.ok(took >= 1100 && took < 4000, `250 kB at 200 kB/s took ${took} ms`);
  });
});

describe("snapshots", () => {
  test("CreateSnapshot_Task freezes the disk: ExportSnapshot serves the snapshot-time bytes after the live disk changed; RemoveSnapshot_Task deletes the frozen files", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const { sim, session } = await simulator(["-autostart=true"]);
    const vm = sim.vms[0]!;
    const before = fill(vm.disks[0]!.file, 200_000);
    assert.equal(await taskFault(session, "CreateSnapshot_Task", vmRef(vm), [["name", "frozen"], ["memory", false], ["quiesce", true]]), "");
    const [snapshot] = await snapshotsOf(session, vm);
    const n = snapshot!.ref.value.replace(/^snapshot-/, "");
    assert.deepEqual(snapFiles(vm), [`${vm.name}-snap-${n}.nvram`, `disk1-snap-${n}.vmdk`]);
    const live = fill(vm.disks[0]!.file, 250_000);
    const devices = (await retrieveOne(session, snapshot!.ref, ["config.hardware.device"], signal()))!.props.get("config.hardware.device")!;
    const disk = devices.children.find((d) => d.type === "VirtualDisk")!;
    assert.match(textOf(child(disk, "backing"), "fileName"), new RegExp(`/disk1-snap-${n}\\.vmdk$`), "the snapshot's config names the frozen file");

    const lease = await readyLease(session, await exportLease(session, "ExportSnapshot", snapshot!.ref));
    const served = await fetchRaw(lease.devices.find((d) => d.disk)!.url);
    assert.ok(served.body.equals(before), "the snapshot-time bytes, while the VM runs and its disk has changed");
    const manifest = await manifestOf(session, lease.ref);
    assert.equal(manifest.find((m) => m.disk)!.sha1, sha("sha1", before));
    await session.call("HttpNfcLeaseComplete", [["_this", lease.ref]], signal());
    const vmLease = await readyLease(session, await exportLease(session, "ExportVm", vmRef(vm)).catch(async () => {
      await runTask(session, "PowerOffVM_Task", vmRef(vm), signal());
      return exportLease(session, "ExportVm", vmRef(vm));
    }));
    assert.ok((await fetchRaw(vmLease.devices.find((d) => d.disk)!.url)).body.equals(live), "ExportVm serves the live disk");

    assert.equal(await taskFault(session, "RemoveSnapshot_Task", snapshot!.ref, [["removeChildren", false], ["consolidate", true]]), "");
    assert.deepEqual(await snapshotsOf(session, vm), []);
    assert.deepEqual(snapFiles(vm), []);
    assert.ok(fs.readFileSync(vm.disks[0]!.file).equals(live), "the live disk is untouched");
  });

  test("three snapshots removed first, then second, then third: each removal deletes only its own files", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const { sim, session } = await simulator(["-autostart=true"]);
    const vm = sim.vms[0]!;
    const live = fill(vm.disks[0]!.file, 10_000);
    for (const name of ["a", "b", "c"]) await runTask(session, "CreateSnapshot_Task", vmRef(vm), signal(), [["name", name], ["memory", false], ["quiesce", false]]);
    const snapshots = await snapshotsOf(session, vm);
    assert.equal(snapFiles(vm).length, 6);
    for (const [i, s] of snapshots.entries()) {
      assert.equal(await taskFault(session, "RemoveSnapshot_Task", s.ref, [["removeChildren", false]]), "");
      assert.equal(snapFiles(vm).filter((f) => f.includes(`-snap-${s.ref.value.replace(/^snapshot-/, "")}.`)).length, 0);
      assert.equal(snapFiles(vm).length, 4 - 2 * i);
      assert.ok(fs.readFileSync(vm.disks[0]!.file).equals(live), `the live disk is still there after removing ${s.name}`);
    }
  });

  test("VCSIM_SNAPSHOT_CREATE_MS: CreateSnapshot_Task answers with a running task; the snapshot exists once it succeeds", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const { sim, session } = await simulator(["-autostart=true"], { VCSIM_SNAPSHOT_CREATE_MS: "1500" });
    const vm = sim.vms[0]!;
    const began = Date.now();
    const task = moRefOf(child(await session.call("CreateSnapshot_Task", [["_this", vmRef(vm)], ["name", "slow"], ["memory", false], ["quiesce", false]], signal()), "returnval"))!;
    assert.ok(Date.now() - began < 1000, "the call returns at once");
    assert.notEqual((await retrieveOne(session, task, ["info.state"], signal()))!.props.get("info.state")!.text, "success");
    assert.deepEqual(await snapshotsOf(session, vm), [], "no snapshot yet");
    await waitFor("the task", async () => (await retrieveOne(session, task, ["info.state"], signal()))!.props.get("info.state")!.text === "success", 10_000, 100);
    assert.ok(Date.now() - began >= 1400, `took ${Date.now() - began} ms`);
    assert.deepEqual((await snapshotsOf(session, vm)).map((s) => s.name), ["slow"]);
  });

  test("VCSIM_SNAPSHOT_QUIESCE_FAIL: a quiesced snapshot of a running VM fails (1: FilesystemQuiesceFault, app: ApplicationQuiesceFault), nothing is made; without quiescing it works", async (t) => {
    if (skipReason) return t.skip(skipReason);
    for (const [setting, fault] of [["1", "FilesystemQuiesceFault"], ["app", "ApplicationQuiesceFault"]]) {
      const { sim, session } = await simulator(["-autostart=true"], { VCSIM_SNAPSHOT_QUIESCE_FAIL: setting! });
      const vm = sim.vms[0]!;
      assert.equal(await taskFault(session, "CreateSnapshot_Task", vmRef(vm), [["name", "q"], ["memory", false], ["quiesce", true]]), fault);
      assert.deepEqual(await snapshotsOf(session, vm), []);
      assert.deepEqual(snapFiles(vm), []);
      assert.equal(await taskFault(session, "CreateSnapshot_Task", vmRef(vm), [["name", "crash"], ["memory", false], ["quiesce", false]]), "");
      assert.deepEqual((await snapshotsOf(session, vm)).map((s) => s.name), ["crash"]);
    }
  });

  test("VCSIM_SNAPSHOT_REMOVE_FAIL=2: two removals fail with FileLocked and keep the snapshot and its files, the third removes them", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const { sim, session } = await simulator(["-autostart=true"], { VCSIM_SNAPSHOT_REMOVE_FAIL: "2" });
    const vm = sim.vms[0]!;
    await runTask(session, "CreateSnapshot_Task", vmRef(vm), signal(), [["name", "held"], ["memory", false], ["quiesce", false]]);
    const [snapshot] = await snapshotsOf(session, vm);
    const files = snapFiles(vm);
    for (let i = 0; i < 2; i++) {
      assert.equal(await taskFault(session, "RemoveSnapshot_Task", snapshot!.ref, [["removeChildren", false]]), "FileLocked");
      assert.deepEqual((await snapshotsOf(session, vm)).map((s) => s.name), ["held"]);
      assert.deepEqual(snapFiles(vm), files);
    }
    assert.equal(await taskFault(session, "RemoveSnapshot_Task", snapshot!.ref, [["removeChildren", false]]), "");
    assert.deepEqual(await snapshotsOf(session, vm), []);
    assert.deepEqual(snapFiles(vm), []);
  });
});

describe("descriptor and datastore files", () => {
  test("CreateDescriptor: References in the order and with the sizes given, the disk's fileRef, the NVRAM as ExtraConfig", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const { sim, session } = await simulator(["-efi", "DC0_H0_VM0"]);
    const vm = sim.vms.find((v) => v.name === "DC0_H0_VM0")!;
    assert.equal(vm.firmware, "efi");
    const lease = await readyLease(session, await exportLease(session, "ExportVm", vmRef(vm)));
    await session.call("HttpNfcLeaseAbort", [["_this", lease.ref]], signal());
    const [disk, nvram] = [lease.devices.find((d) => d.disk)!, lease.devices.find((d) => !d.disk)!];
    const { element } = await import("../src/providers/vsphere/xml.ts");
    const cdp = element([
      ["ovfFiles", [element([["deviceId", disk.key], ["path", "x-disk-1.vmdk"], ["size", 12345]]), element([["deviceId", nvram.key], ["path", "x.nvram"], ["size", 678]])]],
      ["name", "x & y"],
      ["includeImageFiles", false],
    ]);
    const result = child(await session.call("CreateDescriptor", [["_this", session.content.ovfManager!], ["obj", vmRef(vm)], ["cdp", cdp]], signal()), "returnval");
    const ovf = textOf(result, "ovfDescriptor");
    assert.match(ovf, /<File ovf:href="x-disk-1.vmdk" ovf:id="file1" ovf:size="12345"\/>\s*<File ovf:href="x.nvram" ovf:id="file2" ovf:size="678"\/>/);
    assert.match(ovf, /<Disk ovf:capacity="1048576" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1"/);
    assert.match(ovf, /vmw:key="nvram" vmw:value="ovf:\/file\/file2"/);
    assert.match(ovf, /vmw:key="firmware" vmw:value="efi"/);
    assert.match(ovf, /<Name>x &amp; y<\/Name>/);
    assert.match(ovf, /<rasd:HostResource>ovf:\/disk\/vmdisk1<\/rasd:HostResource>/);
    assert.match(ovf, /<rasd:ResourceType>10<\/rasd:ResourceType>/, "the NIC");
    assert.equal(await faultOf(session.call("CreateDescriptor", [["_this", session.content.ovfManager!], ["obj", session.content.rootFolder!], ["cdp", cdp]], signal())), "InvalidArgument");
  });

  test("/folder: 401 without a session, the file with the session's cookie (Range too) or with Basic credentials", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const { sim, session } = await simulator(["-username", "user", "-password", "pass"]);
    const vm = sim.vms[0]!;
    const bytes = fill(vm.disks[0]!.file, 5000);
    const url = `${new URL(sim.url).origin}/folder/${vm.name}/disk1.vmdk?dcPath=DC0&dsName=LocalDS_0`;
    assert.equal((await fetchRaw(url)).status, 401);
    assert.equal((await fetchRaw(url, { headers: { cookie: "vmware_soap_session=not-a-session" } })).status, 401);
    const withCookie = await fetchRaw(url, { headers: { cookie: `vmware_soap_session=${session.soap.cookie}` } });
    assert.equal(withCookie.status, 200);
    assert.ok(withCookie.body.equals(bytes));
    const range = await fetchRaw(url, { headers: { cookie: `vmware_soap_session=${session.soap.cookie}`, range: "bytes=10-19" } });
    assert.deepEqual([range.status, range.body], [206, bytes.subarray(10, 20)]);
    const basic = (user: string, pass: string) => ({ authorization: `Basic ${Buffer.from(`${user}:${pass}`).toString("base64")}` });
    assert.equal((await fetchRaw(url, { headers: basic("user", "pass") })).status, 200);
    assert.equal((await fetchRaw(url, { headers: basic("user", "wrong") })).status, 401);
  });
});
