import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, fork } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { checkFixed, parseVhdFooter } from "../src/package/vhd-footer.ts";
import { startAzurite, type Azurite } from "./support/azurite.ts";
import { fixedVhdFooter, startAzureStandin, type AzureStandin } from "./support/azure-standin.ts";
import { tempDir } from "./support/temp-dir.ts";

const MiB = 1024 * 1024;
const RG = "rg1";
let azurite: Azurite;
let standin: AzureStandin;
let token: string;

const osData = Buffer.alloc(1 * MiB, 0x11);
const dataHead = Buffer.alloc(64 * 1024, 0x22);
const dataTail = Buffer.alloc(512, 0x33);

before(async () => {
  azurite = await startAzurite();
  standin = await startAzureStandin({ azurite, tls: true, pageSize: 2 });
  await standin.addDisk({ name: "vm1-os", sizeBytes: 8 * MiB, osType: "Linux", hyperVGeneration: "V2", writes: [{ offset: 0, data: osData }] });
  await standin.addDisk({ name: "vm1-data", sizeBytes: 16 * MiB, sku: "StandardSSD_LRS",
    writes: [{ offset: 2 * MiB, data: dataHead }, { offset: 16 * MiB - 512, data: dataTail }] });
  await standin.addVm({ name: "vm1", osDisk: "vm1-os", dataDisks: [{ lun: 0, disk: "vm1-data" }], securityType: "TrustedLaunch",
    nics: [{ name: "vm1-nic", macAddress: "00-0D-3A-11-22-33", vnet: "vnet1", subnet: "default" }] });
  await standin.addDisk({ name: "vm2-os", sizeBytes: 4 * MiB });
  await standin.addVm({ name: "vm2", osDisk: "vm2-os", powerState: "deallocated", size: "Standard_B2s" });
  await standin.addDisk({ name: "vm3-os", sizeBytes: 4 * MiB, resourceGroup: "rg2" });
  await standin.addVm({ name: "vm3", resourceGroup: "rg2", osDisk: "vm3-os", powerState: "stopped" });
  token = (await json(await tokenFor())).access_token;
});

after(async () => {
  await standin?.close();
  await azurite?.stop();
});

async function tokenFor(secret = standin.clientSecret, scope = `${standin.resourceManager}/.default`, tenant = standin.tenantId) {
  return fetch(`${standin.authorityHost}/${tenant}/oauth2/v2.0/token`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "client_credentials", client_id: standin.clientId, client_secret: secret, scope }),
  });
}

async function arm(method: string, p: string, body?: unknown, apiVersion: string | null = "2024-03-02", bearer = token) {
  const url = p.startsWith("http") ? new URL(p) : new URL(standin.resourceManager + p);
  if (apiVersion && !url.searchParams.has("api-version")) url.searchParams.set("api-version", apiVersion);
  const res = await fetch(url, {
    method,
    headers: { authorization: `Bearer ${bearer}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
}

/** Polls an LRO as ARM says: Azure-AsyncOperation until a terminal status, then the Location for the result. */
async function lro(first: { status: number; headers: Headers }) {
  const status = first.headers.get("azure-asyncoperation")!;
  assert.ok(status, "an Azure-AsyncOperation header");
  let polls = 0;
  for (;;) {
    const op = await arm("GET", status, undefined, null);
    assert.equal(op.status, 200);
    polls++;
    if (op.body.status !== "InProgress") {
      assert.equal(op.body.status, "Succeeded");
      const location = first.headers.get("location");
      return { polls, op: op.body, final: location ? await arm("GET", location, undefined, null) : undefined };
    }
  }
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const json = async (res: Response): Promise<any> => res.json();
const sub = () => `/subscriptions/${standin.subscriptionId}`;
const rgPath = (rg = RG) => `${sub()}/resourceGroups/${rg}/providers/Microsoft.Compute`;

test("token: client credentials, and Entra ID's errors for a wrong secret, client, tenant and scope", async () => {
  const ok = await tokenFor();
  assert.equal(ok.status, 200);
  const body = await json(ok);
  assert.equal(body.token_type, "Bearer");
  assert.equal(body.expires_in, 3599);
  assert.ok(body.access_token.length > 20);
  assert.notEqual(body.access_token, token, "a fresh token per request");

  const wrong = await tokenFor("nope");
  assert.equal(wrong.status, 401);
  const w = await json(wrong);
  assert.equal(w.error, "invalid_client");
  assert.match(w.error_description, /^AADSTS7000215: Invalid client secret provided/);
  assert.deepEqual(w.error_codes, [7000215]);

  const client = await fetch(`${standin.authorityHost}/${standin.tenantId}/oauth2/v2.0/token`, {
    method: "POST",
    body: new URLSearchParams({ grant_type: "client_credentials", client_id: "11111111-1111-1111-1111-111111111111", client_secret: "x", scope: `${standin.resourceManager}/.default` }),
  });
  assert.equal(client.status, 400);
  assert.match((await json(client)).error_description, /AADSTS700016/);

  const tenant = await tokenFor(undefined, undefined, "22222222-2222-2222-2222-222222222222");
  assert.equal(tenant.status, 400);
  assert.match((await json(tenant)).error_description, /AADSTS90002/);

  const scope = await tokenFor(undefined, "https://management.azure.com/.default");
  assert.equal(scope.status, 400);
  assert.match((await json(scope)).error_description, /AADSTS500011/);
  assert.equal(standin.counts.tokenRequests, 6);
  const logged = standin.requests.filter((r) => r.path === `/${standin.tenantId}/oauth2/v2.0/token`).map((r) => r.status);
  assert.deepEqual(logged, [200, 200, 401, 400, 400], "token requests in the log (the unknown tenant's path differs)");
});

test("ARM: bearer token and api-version required; unknown versions refused", async () => {
  const none = await arm("GET", `${rgPath()}/virtualMachines`, undefined, "2024-07-01", "bogus");
  assert.equal(none.status, 401);
  assert.equal(none.body.error.code, "InvalidAuthenticationToken");
  assert.match(none.headers.get("www-authenticate")!, /^Bearer /);
  const missing = await arm("GET", `${rgPath()}/virtualMachines`, undefined, null);
  assert.equal(missing.status, 400);
  assert.equal(missing.body.error.code, "MissingApiVersionParameter");
  const bad = await arm("GET", `${rgPath()}/virtualMachines`, undefined, "2099-01-01");
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error.code, "InvalidApiVersionParameter");
  const diskVersionOnVms = await arm("GET", `${rgPath()}/virtualMachines`, undefined, "2024-03-02");
  assert.equal(diskVersionOnVms.status, 400);
  assert.ok(missing.headers.get("x-ms-request-id"));
});

test("ARM: VMs listed per subscription (paged by nextLink) and per group, with instance view, sizes and NICs", async () => {
  const names: string[] = [];
  let next: string | undefined = `${sub()}/providers/Microsoft.Compute/virtualMachines?statusOnly=true`;
  let pages = 0;
  while (next) {
    const page = await arm("GET", next, undefined, "2024-07-01");
    assert.equal(page.status, 200);
    pages++;
    for (const vm of page.body.value) {
      names.push(vm.name);
      assert.ok(vm.properties.instanceView.statuses.some((s: { code: string }) => s.code.startsWith("PowerState/")));
    }
    next = page.body.nextLink;
  }
  assert.deepEqual(names, ["vm1", "vm2", "vm3"]);
  assert.equal(pages, 2);

  const rg2 = await arm("GET", `${rgPath("rg2")}/virtualMachines`, undefined, "2024-07-01");
  assert.deepEqual(rg2.body.value.map((v: { name: string }) => v.name), ["vm3"]);

  const vm = await arm("GET", `${rgPath()}/virtualMachines/vm1?$expand=instanceView`, undefined, "2024-07-01");
  assert.equal(vm.status, 200);
  const p = vm.body.properties;
  assert.equal(p.hardwareProfile.vmSize, "Standard_D2s_v3");
  assert.equal(p.storageProfile.osDisk.osType, "Linux");
  assert.equal(p.storageProfile.osDisk.managedDisk.id, `${rgPath()}/disks/vm1-os`);
  assert.deepEqual(p.storageProfile.dataDisks.map((d: { lun: number; name: string }) => [d.lun, d.name]), [[0, "vm1-data"]]);
  assert.equal(p.securityProfile.securityType, "TrustedLaunch");
  assert.match(p.vmId, /^[0-9a-f-]{36}$/);
  assert.deepEqual(p.instanceView.statuses.map((s: { code: string }) => s.code), ["ProvisioningState/succeeded", "PowerState/running"]);

  const view = await arm("GET", `${rgPath()}/virtualMachines/vm2/instanceView`, undefined, "2024-07-01");
  assert.equal(view.body.statuses[1].code, "PowerState/deallocated");

  const sizes = await arm("GET", `${sub()}/providers/Microsoft.Compute/locations/westeurope/vmSizes`, undefined, "2024-07-01");
  const d2 = sizes.body.value.find((s: { name: string }) => s.name === "Standard_D2s_v3");
  assert.deepEqual([d2.numberOfCores, d2.memoryInMB], [2, 8192]);

  const nicId = p.networkProfile.networkInterfaces[0].id;
  assert.equal(p.networkProfile.networkInterfaces[0].properties.primary, true);
  const nic = await arm("GET", nicId, undefined, "2024-05-01");
  assert.equal(nic.body.properties.macAddress, "00-0D-3A-11-22-33");
  assert.match(nic.body.properties.ipConfigurations[0].properties.subnet.id, /\/virtualNetworks\/vnet1\/subnets\/default$/);

  const missing = await arm("GET", `${rgPath()}/virtualMachines/nope`, undefined, "2024-07-01");
  assert.equal(missing.status, 404);
  assert.equal(missing.body.error.code, "ResourceNotFound");
  const noGroup = await arm("GET", `${rgPath("nogroup")}/virtualMachines/vm1`, undefined, "2024-07-01");
  assert.equal(noGroup.body.error.code, "ResourceGroupNotFound");
});

test("ARM: disks with size, SKU, state; a running VM's disk refuses access, a deallocated VM's disk grants it", async () => {
  const disk = await arm("GET", `${rgPath()}/disks/vm1-data`);
  assert.equal(disk.status, 200);
  assert.equal(disk.body.sku.name, "StandardSSD_LRS");
  assert.equal(disk.body.properties.diskSizeBytes, 16 * MiB);
  assert.equal(disk.body.properties.diskState, "Attached");
  assert.equal(disk.body.managedBy, `${rgPath()}/virtualMachines/vm1`);
  assert.equal((await arm("GET", `${rgPath()}/disks/vm1-os`)).body.properties.hyperVGeneration, "V2");
  assert.equal((await arm("GET", `${rgPath()}/disks/vm2-os`)).body.properties.diskState, "Reserved");

  const refused = await arm("POST", `${rgPath()}/disks/vm1-data/beginGetAccess`, { access: "Read", durationInSeconds: 600 });
  assert.equal(refused.status, 409);
  assert.equal(refused.body.error.code, "OperationNotAllowed");
  assert.match(refused.body.error.message, /vm1/);
  const stopped = await arm("POST", `${rgPath("rg2")}/disks/vm3-os/beginGetAccess`, { access: "Read", durationInSeconds: 600 });
  assert.equal(stopped.status, 409);

  const grant = await arm("POST", `${rgPath()}/disks/vm2-os/beginGetAccess`, { access: "Read", durationInSeconds: 600 });
  assert.equal(grant.status, 202);
  const { final } = await lro(grant);
  assert.equal(final!.status, 200);
  const sas = new URL(final!.body.accessSAS);
  assert.equal(sas.origin, standin.blobProxy);
  assert.equal((await arm("GET", `${rgPath()}/disks/vm2-os`)).body.properties.diskState, "ActiveSAS");
  const whole = await fetch(sas);
  assert.equal(whole.status, 200);
  const bytes = Buffer.from(await whole.arrayBuffer());
  assert.equal(bytes.length, 4 * MiB + 512);
  assert.ok(bytes.equals(await standin.vhdBytes("vm2-os")));
  assert.deepEqual(standin.grants(), [{ resourceId: `${rgPath()}/disks/vm2-os` }]);

  const revoke = await arm("POST", `${rgPath()}/disks/vm2-os/endGetAccess`);
  assert.equal(revoke.status, 202);
  await lro(revoke);
  assert.deepEqual(standin.grants(), []);
  const after = await fetch(sas);
  assert.equal(after.status, 403);
  assert.equal(after.headers.get("x-ms-error-code"), "AuthenticationFailed");
  await after.arrayBuffer();
});

test("ARM: a snapshot keeps the disk's content at creation; access, page ranges, revoke, delete", async () => {
  const snapPath = `${rgPath()}/snapshots/snap1`;
  const put = await arm("PUT", snapPath, {
    location: "westeurope",
    sku: { name: "Standard_LRS" },
    properties: { creationData: { createOption: "Copy", sourceResourceId: `${rgPath()}/disks/vm1-data` }, incremental: true },
  });
  assert.equal(put.status, 201, JSON.stringify(put.body));
  assert.equal(put.body.properties.provisioningState, "Creating");
  await standin.writeDisk("vm1-data", 2 * MiB, Buffer.alloc(512, 0x44)); // after the snapshot: not in it
  const { polls } = await lro(put);
  assert.equal(polls, 2, "lroPolls 1: one InProgress, then Succeeded");
  const got = await arm("GET", snapPath);
  assert.equal(got.body.properties.provisioningState, "Succeeded");
  assert.equal(got.body.properties.incremental, true);
  assert.deepEqual(standin.snapshots().map((s) => s.name), ["snap1"]);

  const grant = await arm("POST", `${snapPath}/beginGetAccess`, { access: "Read", durationInSeconds: 600 });
  const { op, final } = await lro(grant);
  assert.equal(op.properties.output.accessSAS, final!.body.accessSAS);
  const sas = final!.body.accessSAS as string;
  const before = standin.counts.pageListRequests;
  const ranges = await fetch(`${sas}&comp=pagelist`);
  assert.equal(ranges.status, 200);
  const xml = await ranges.text();
  const found: number[][] = [];
  for (const m of xml.matchAll(/<Start>(\d+)<\/Start><End>(\d+)<\/End>/g)) {
    // Azurite lists adjacent writes as separate ranges (Azure may merge them): compare the covered bytes.
    const last = found.at(-1);
    if (last && last[1]! + 1 === Number(m[1])) last[1] = Number(m[2]);
    else found.push([Number(m[1]), Number(m[2])]);
  }
  assert.deepEqual(found, [[2 * MiB, 2 * MiB + 64 * 1024 - 1], [16 * MiB - 512, 16 * MiB + 511]], xml);
  assert.equal(standin.counts.pageListRequests, before + 1);
  const part = await fetch(sas, { headers: { "x-ms-range": `bytes=${2 * MiB}-${2 * MiB + 1023}` } });
  assert.equal(part.status, 206);
  assert.ok(Buffer.from(await part.arrayBuffer()).equals(dataHead.subarray(0, 1024)), "snapshot-time content");

  const busy = await arm("DELETE", snapPath);
  assert.equal(busy.status, 409, "a snapshot with an open grant is not deleted");
  await lro(await arm("POST", `${snapPath}/endGetAccess`));
  const del = await arm("DELETE", snapPath);
  assert.equal(del.status, 202);
  assert.ok(del.headers.get("location"));
  await lro(del);
  assert.deepEqual(standin.snapshots(), []);
  assert.equal((await arm("GET", snapPath)).status, 404);
  assert.equal((await arm("DELETE", snapPath)).status, 204);
});

test("faults: ARM throttling, RBAC denial, snapshot delete failure, blob cut, throttle and revoked SAS", async () => {
  standin.faults.throttleArm(1, 2, /virtualMachines/);
  const throttled = await arm("GET", `${rgPath()}/virtualMachines/vm1`, undefined, "2024-07-01");
  assert.equal(throttled.status, 429);
  assert.equal(throttled.headers.get("retry-after"), "2");
  assert.equal((await arm("GET", `${rgPath()}/virtualMachines/vm1`, undefined, "2024-07-01")).status, 200);

  standin.faults.deny("Microsoft.Compute/snapshots/write");
  const body = { location: "westeurope", properties: { creationData: { createOption: "Copy", sourceResourceId: `${rgPath()}/disks/vm1-os` } } };
  const denied = await arm("PUT", `${rgPath()}/snapshots/s2`, body);
  assert.equal(denied.status, 403);
  assert.equal(denied.body.error.code, "AuthorizationFailed");
  assert.match(denied.body.error.message, /perform action 'Microsoft\.Compute\/snapshots\/write' over scope/);
  standin.faults.reset();

  const put = await arm("PUT", `${rgPath()}/snapshots/s2`, body);
  assert.equal(put.status, 201);
  await lro(put);
  standin.faults.failSnapshotDelete(1);
  assert.equal((await arm("DELETE", `${rgPath()}/snapshots/s2`)).status, 500);
  assert.equal(standin.snapshots().length, 1);

  const grant = await lro(await arm("POST", `${rgPath()}/snapshots/s2/beginGetAccess`, { access: "Read", durationInSeconds: 60 }));
  const sas = grant.final!.body.accessSAS as string;
  standin.faults.throttleBlob(1, 1);
  const busy = await fetch(sas);
  assert.equal(busy.status, 503);
  assert.equal(busy.headers.get("retry-after"), "1");
  await busy.arrayBuffer();
  standin.faults.cutBlob(100_000);
  const short = await fetch(sas, { headers: { range: "bytes=0-4095" } });
  assert.equal((await short.arrayBuffer()).byteLength, 4096, "a body shorter than the cut point is not cut");
  const bytesBefore = standin.counts.blobBytes;
  const cut = await fetch(sas);
  assert.equal(cut.status, 200);
  await assert.rejects(cut.arrayBuffer());
  assert.equal(standin.counts.blobCuts, 1);
  assert.equal(standin.counts.blobBytes - bytesBefore, 100_000);
  const whole = Buffer.from(await (await fetch(sas)).arrayBuffer());
  assert.ok(whole.subarray(0, MiB).equals(osData));
  const forged = new URL(sas);
  forged.searchParams.set("sig", "AAAA");
  assert.equal((await fetch(forged)).status, 403);
  await lro(await arm("POST", `${rgPath()}/snapshots/s2/endGetAccess`));
  await lro(await arm("DELETE", `${rgPath()}/snapshots/s2`));
  assert.deepEqual(standin.snapshots(), []);
});

test("faults: LRO length, provisioningState seen by GET, blob rate and byte counts, expired tokens", async () => {
  standin.faults.reset();
  standin.faults.lroPolls = 3;
  const body = { location: "westeurope", properties: { creationData: { createOption: "Copy", sourceResourceId: `${rgPath()}/disks/vm1-os` }, incremental: false } };
  const put = await arm("PUT", `${rgPath()}/snapshots/s3`, body);
  assert.equal(put.status, 201);
  // InProgress while the copy runs (however many looks), then for lroPolls more looks.
  assert.ok((await lro(put)).polls >= 4);
  const again = await arm("PUT", `${rgPath()}/snapshots/s4`, body);
  assert.equal(again.status, 201);
  const states: string[] = [];
  while (states.at(-1) !== "Succeeded" && states.length < 1000) states.push((await arm("GET", `${rgPath()}/snapshots/s4`)).body.properties.provisioningState);
  assert.equal(states.at(-1), "Succeeded", "a GET of the resource moves its creation on too");
  assert.ok(states.length >= 4, states.join());
  standin.faults.lroPolls = 0;

  const { final } = await lro(await arm("POST", `${rgPath()}/snapshots/s3/beginGetAccess`, { access: "Read", durationInSeconds: 60 }));
  standin.faults.blobBytesPerSecond = 4 * MiB;
  const bytesBefore = standin.counts.blobBytes;
  const requestsBefore = standin.counts.blobRequests;
  const started = Date.now();
  // Two bodies at once share the rate: 2 x 1 MiB at 4 MiB/s takes about half a second, not a quarter.
  const sas = final!.body.accessSAS as string;
  const halves = await Promise.all([0, MiB].map(async (at) => {
    const slow = await fetch(sas, { headers: { range: `bytes=${at}-${at + MiB - 1}` } });
    assert.equal(slow.status, 206);
    return (await slow.arrayBuffer()).byteLength;
  }));
  assert.deepEqual(halves, [MiB, MiB]);
  assert.ok(Date.now() - started >= 400, `2 MiB at 4 MiB/s took ${Date.now() - started} ms`);
  assert.equal(standin.counts.blobBytes - bytesBefore, 2 * MiB);
  assert.equal(standin.counts.blobRequests - requestsBefore, 2);
  standin.faults.blobBytesPerSecond = 0;
  await lro(await arm("POST", `${rgPath()}/snapshots/s3/endGetAccess`));
  for (const name of ["s3", "s4"]) await lro(await arm("DELETE", `${rgPath()}/snapshots/${name}`));
  assert.deepEqual(standin.snapshots(), []);

  standin.faults.expireTokens();
  const expired = await arm("GET", `${rgPath()}/disks/vm1-os`);
  assert.equal(expired.status, 401);
  assert.equal(expired.body.error.code, "InvalidAuthenticationToken");
  token = (await json(await tokenFor())).access_token;
  assert.equal((await arm("GET", `${rgPath()}/disks/vm1-os`)).status, 200);
  standin.faults.reset();
});

test("the VHD footer: accepted by the daemon's parser and by qemu-img", async () => {
  const size = 64 * MiB;
  const footer = fixedVhdFooter(size);
  const parsed = parseVhdFooter(footer, "standin");
  assert.equal(parsed.diskType, "fixed");
  assert.equal(parsed.currentSize, size);
  assert.equal(parsed.creatorApp, "wa");
  checkFixed(parsed, size + 512, "standin");
  const vhd = await standin.vhdBytes("vm1-os");
  assert.equal(parseVhdFooter(vhd.subarray(-512), "vm1-os").currentSize, 8 * MiB);

  const dir = tempDir("standin-vhd");
  const file = path.join(dir, "disk.vhd");
  fs.writeFileSync(file, vhd);
  const info = JSON.parse(execFileSync("qemu-img", ["info", "--output=json", "--image-opts",
    `driver=vpc,force_size_calc=current_size,file.driver=file,file.filename=${file}`], { encoding: "utf8" }));
  assert.equal(info["virtual-size"], 8 * MiB);
  const plain = JSON.parse(execFileSync("qemu-img", ["info", "--output=json", "-f", "vpc", file], { encoding: "utf8" }));
  assert.equal(plain.format, "vpc");
});

test("Microsoft's SDKs (@azure/identity, @azure/arm-compute, @azure/storage-blob) against the https twin", async () => {
  const tls = standin.https!;
  assert.ok(tls, "started with tls");
  standin.faults.reset();
  const child = fork(path.join(import.meta.dirname, "support", "azure-standin", "sdk-conformance.ts"), [], {
    execArgv: ["--import", "tsx"],
    env: {
      ...process.env,
      NODE_EXTRA_CA_CERTS: tls.caFile,
      STANDIN_SETUP: JSON.stringify({
        tenantId: standin.tenantId,
        clientId: standin.clientId,
        clientSecret: standin.clientSecret,
        subscriptionId: standin.subscriptionId,
        authorityHost: tls.authorityHost,
        resourceManager: tls.resourceManager,
      }),
    },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const steps: string[] = [];
  let failure: { step: string; message: string; stack: string } | undefined;
  let done = false;
  const calls: Record<string, (...args: any[]) => unknown> = {
    writeDisk: (disk: string, offset: number, length: number, fill: number) => standin.writeDisk(disk, offset, Buffer.alloc(length, fill)),
    grants: () => standin.grants(),
    snapshots: () => standin.snapshots(),
    deny: (action: string) => standin.faults.deny(action),
    reset: () => standin.faults.reset(),
    throttleArm: (n: number, seconds: number, match: string) => standin.faults.throttleArm(n, seconds, new RegExp(match)),
    requests: () => standin.requests,
  };
  child.on("message", (message: any) => {
    if (message.type === "step") steps.push(message.step);
    else if (message.type === "fail") failure = message;
    else if (message.type === "done") done = true;
    else if (message.type === "call") {
      Promise.resolve()
        .then(() => calls[message.name]!(...message.args))
        .then((result) => child.send({ id: message.id, result }), (err: Error) => child.send({ id: message.id, error: err.message }));
    }
  });
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  assert.equal(failure, undefined, failure && `${failure.step}: ${failure.stack}`);
  assert.equal(code, 0);
  assert.ok(done);
  assert.equal(steps.length, 15, steps.join("\n"));
  const live = await standin.vhdBytes("vm1-data");
  assert.ok(live.subarray(2 * MiB + 1024, 2 * MiB + 2048).equals(Buffer.alloc(1024, 0x55)), "the live disk changed after the snapshot");
  assert.deepEqual(standin.snapshots(), []);
  assert.deepEqual(standin.grants(), []);
});
