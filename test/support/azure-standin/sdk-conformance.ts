/**
 * Run as a child process (fork, with NODE_EXTRA_CA_CERTS = the https twin's certificate, so that TLS
 * verification stays on): drives the stand-in with Microsoft's own clients, @azure/identity and
 * @azure/arm-compute, and asserts what they get. The parent holds the stand-in and answers `call` messages
 * (writeDisk, faults, ...) so that the steps can change its state in between. Each passed step is reported; the
 * first failure ends the process with code 1.
 */
import assert from "node:assert/strict";
import { ClientSecretCredential } from "@azure/identity";
import { ComputeManagementClient } from "@azure/arm-compute";
import { AnonymousCredential, PageBlobClient } from "@azure/storage-blob";

interface Setup {
  tenantId: string;
  clientId: string;
  clientSecret: string;
  subscriptionId: string;
  authorityHost: string;
  resourceManager: string;
}

const setup = JSON.parse(process.env.STANDIN_SETUP!) as Setup;
const MiB = 1024 * 1024;
let callId = 0;
const pending = new Map<number, (value: unknown) => void>();
process.on("message", (message: { id: number; result?: unknown; error?: string }) => {
  pending.get(message.id)?.(message);
  pending.delete(message.id);
});

/** Asks the parent to act on the stand-in. */
function call(name: string, ...args: unknown[]): Promise<any> {
  const id = ++callId;
  return new Promise((resolve, reject) => {
    pending.set(id, (message) => {
      const m = message as { result?: unknown; error?: string };
      if (m.error) reject(new Error(m.error));
      else resolve(m.result);
    });
    process.send!({ type: "call", id, name, args });
  });
}

async function step(name: string, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (err) {
    process.send!({ type: "fail", step: name, message: (err as Error).message, stack: (err as Error).stack });
    await new Promise((resolve) => setTimeout(resolve, 50));
    process.exit(1);
  }
  process.send!({ type: "step", step: name });
}

const fast = { updateIntervalInMs: 10 };
const credentialOptions = { authorityHost: setup.authorityHost, disableInstanceDiscovery: true };
const credential = new ClientSecretCredential(setup.tenantId, setup.clientId, setup.clientSecret, credentialOptions);
const compute = new ComputeManagementClient(credential, setup.subscriptionId, {
  endpoint: setup.resourceManager,
  credentials: { scopes: [`${setup.resourceManager}/.default`] },
});
const disk = (rg: string, name: string) => `/subscriptions/${setup.subscriptionId}/resourceGroups/${rg}/providers/Microsoft.Compute/disks/${name}`;

await step("identity: getToken", async () => {
  const token = await credential.getToken(`${setup.resourceManager}/.default`);
  assert.ok(token.token.length > 20);
  assert.ok(token.expiresOnTimestamp > Date.now() + 50 * 60_000);
});

await step("identity: a wrong secret is AADSTS7000215", async () => {
  const wrong = new ClientSecretCredential(setup.tenantId, setup.clientId, "not-the-secret", credentialOptions);
  await assert.rejects(wrong.getToken(`${setup.resourceManager}/.default`), /AADSTS7000215/);
});

await step("compute: virtualMachines.listAll pages through nextLink", async () => {
  const names: string[] = [];
  for await (const vm of compute.virtualMachines.listAll()) names.push(vm.name!);
  assert.deepEqual(names, ["vm1", "vm2", "vm3"]);
  const pages: number[] = [];
  for await (const page of compute.virtualMachines.listAll().byPage()) pages.push(page.length);
  assert.deepEqual(pages, [2, 1]);
});

await step("compute: virtualMachines.list(rg)", async () => {
  const names: string[] = [];
  for await (const vm of compute.virtualMachines.list("rg2")) names.push(vm.name!);
  assert.deepEqual(names, ["vm3"]);
});

await step("compute: virtualMachines.get with instanceView", async () => {
  const vm = await compute.virtualMachines.get("rg1", "vm1", { expand: "instanceView" });
  // The SDK flattens the wire's "properties" into the model.
  const p = vm;
  assert.equal(p.hardwareProfile!.vmSize, "Standard_D2s_v3");
  assert.equal(p.storageProfile!.osDisk!.managedDisk!.id, disk("rg1", "vm1-os"));
  assert.equal(p.storageProfile!.dataDisks![0]!.lun, 0);
  assert.equal(p.securityProfile!.securityType, "TrustedLaunch");
  assert.deepEqual(p.instanceView!.statuses!.map((s) => s.code), ["ProvisioningState/succeeded", "PowerState/running"]);
  assert.equal(p.networkProfile!.networkInterfaces![0]!.primary, true);
  assert.match(p.vmId!, /^[0-9a-f-]{36}$/);
});

await step("compute: virtualMachines.instanceView of a deallocated VM", async () => {
  const view = await compute.virtualMachines.instanceView("rg1", "vm2");
  assert.deepEqual(view.statuses!.map((s) => s.code), ["ProvisioningState/succeeded", "PowerState/deallocated"]);
});

await step("compute: virtualMachineSizes.list(location)", async () => {
  const sizes = new Map<string, { cores?: number; memory?: number }>();
  for await (const size of compute.virtualMachineSizes.list("westeurope")) sizes.set(size.name!, { cores: size.numberOfCores, memory: size.memoryInMB });
  assert.deepEqual(sizes.get("Standard_D2s_v3"), { cores: 2, memory: 8192 });
  assert.deepEqual(sizes.get("Standard_B2s"), { cores: 2, memory: 4096 });
});

await step("compute: disks.get", async () => {
  const d = await compute.disks.get("rg1", "vm1-data");
  assert.equal(d.sku!.name, "StandardSSD_LRS");
  assert.equal(d.diskSizeBytes, 16 * MiB);
  assert.equal(d.diskState, "Attached");
  assert.equal(d.managedBy, `/subscriptions/${setup.subscriptionId}/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/vm1`);
});

await step("compute: a 404 is RestError ResourceNotFound", async () => {
  await assert.rejects(compute.disks.get("rg1", "nope"), (err: { statusCode?: number; code?: string }) => {
    assert.equal(err.statusCode, 404);
    assert.equal(err.code, "ResourceNotFound");
    return true;
  });
});

await step("compute: snapshots.beginCreateOrUpdateAndWait, then get", async () => {
  const created = await compute.snapshots.beginCreateOrUpdateAndWait("rg1", "sdk-snap", {
    location: "westeurope",
    sku: { name: "Standard_LRS" },
    creationData: { createOption: "Copy", sourceResourceId: disk("rg1", "vm1-data") },
    incremental: true,
  }, fast);
  assert.equal(created.provisioningState, "Succeeded");
  const got = await compute.snapshots.get("rg1", "sdk-snap");
  assert.equal(got.incremental, true);
  assert.equal(got.creationData!.sourceResourceId, disk("rg1", "vm1-data"));
});

await step("compute: snapshots.beginGrantAccessAndWait; the SAS reads page ranges and the snapshot-time bytes", async () => {
  await call("writeDisk", "vm1-data", 2 * MiB + 1024, 1024, 0x55); // after the snapshot
  const { accessSAS } = await compute.snapshots.beginGrantAccessAndWait("rg1", "sdk-snap", { access: "Read", durationInSeconds: 600 }, fast);
  assert.ok(accessSAS);
  const blob = new PageBlobClient(accessSAS, new AnonymousCredential());
  const ranges = await blob.getPageRanges();
  assert.ok(ranges.pageRange!.some((r) => r.offset === 2 * MiB), JSON.stringify(ranges.pageRange));
  const bytes = await blob.downloadToBuffer(2 * MiB + 1024, 1024);
  assert.ok(bytes.equals(Buffer.alloc(1024, 0x22)), "the snapshot keeps its creation-time content");
  assert.deepEqual(await call("grants"), [{ resourceId: `/subscriptions/${setup.subscriptionId}/resourceGroups/rg1/providers/Microsoft.Compute/snapshots/sdk-snap` }]);

  await compute.snapshots.beginRevokeAccessAndWait("rg1", "sdk-snap", fast);
  await assert.rejects(blob.getPageRanges(), (err: { statusCode?: number }) => err.statusCode === 403);
  assert.deepEqual(await call("grants"), []);
});

await step("compute: disks.beginGrantAccessAndWait on a deallocated VM's disk, then revoke", async () => {
  const { accessSAS } = await compute.disks.beginGrantAccessAndWait("rg1", "vm2-os", { access: "Read", durationInSeconds: 600 }, fast);
  const blob = new PageBlobClient(accessSAS!, new AnonymousCredential());
  assert.equal((await blob.getProperties()).contentLength, 4 * MiB + 512);
  await compute.disks.beginRevokeAccessAndWait("rg1", "vm2-os", fast);
  await assert.rejects(blob.getProperties(), (err: { statusCode?: number }) => err.statusCode === 403);
});

await step("compute: snapshots.beginDeleteAndWait", async () => {
  await compute.snapshots.beginDeleteAndWait("rg1", "sdk-snap", fast);
  assert.deepEqual(await call("snapshots"), []);
  await assert.rejects(compute.snapshots.get("rg1", "sdk-snap"), (err: { statusCode?: number }) => err.statusCode === 404);
});

await step("compute: 403 AuthorizationFailed names the action", async () => {
  await call("deny", "Microsoft.Compute/virtualMachines/read");
  await assert.rejects(compute.virtualMachines.get("rg1", "vm1"), (err: { statusCode?: number; code?: string; message: string }) => {
    assert.equal(err.statusCode, 403);
    assert.equal(err.code, "AuthorizationFailed");
    assert.match(err.message, /'Microsoft\.Compute\/virtualMachines\/read'/);
    return true;
  });
  await call("reset");
});

await step("compute: a 429 with Retry-After 1 is retried by the SDK", async () => {
  await call("throttleArm", 1, 1, "disks/vm1-os");
  const started = Date.now();
  const d = await compute.disks.get("rg1", "vm1-os");
  assert.equal(d.name, "vm1-os");
  assert.ok(Date.now() - started >= 900, "the SDK waited as Retry-After said");
  const statuses = ((await call("requests")) as { path: string; status: number }[]).filter((r) => r.path.endsWith("/disks/vm1-os")).map((r) => r.status);
  assert.deepEqual(statuses.slice(-2), [429, 200]);
});

process.send!({ type: "done" });
process.disconnect();
