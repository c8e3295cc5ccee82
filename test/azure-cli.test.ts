// hyperctl with provider "azure" as a user runs it: the --azure-* options of export, vms list/get and schedules
// create reach the daemon (read back with a grpc-js GetJob, or the request as a recording Connect server receives
// it), the client secret from HYPERVISORD_AZURE_CLIENT_SECRET, never printed (-o json leaves the empty
// client_secret out), and bad values refused with exit code 2 naming the option, before any call.
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { create } from "@bufbuild/protobuf";
import { JobState } from "../gen/hypervisord/v1/job_pb.js";
import {
  HypervisordService, type CreateScheduleRequest, type GetVMRequest, type ListVMsRequest, type SubmitJobRequest,
} from "../gen/hypervisord/v1/service_pb.js";
import { VirtualMachineSchema } from "../gen/hypervisord/v1/vm_pb.js";
import { createGrpcJsClient, type GrpcJsClient } from "./support/clients.ts";
import { spawnDaemon, type DaemonProcess } from "./support/daemon-process.ts";
import { runHyperctl, type HyperctlOptions } from "./support/hyperctl.ts";

/** Nothing listens here: a command that called the daemon would fail with "cannot reach", not a usage error. */
const NO_DAEMON = "http://127.0.0.1:9";
const SECRET = "s3cr3t-azure-value";
const ENV_SECRET = "env-azure-secret-value-7c1d";
const TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT = "11111111-2222-3333-4444-555555555555";
const SUBSCRIPTION = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
/** Loopback endpoints (plain http is accepted there); nothing listens, a job's run fails on its own. */
const ENDPOINT = "http://127.0.0.1:9";

const AZURE_FLAGS = [
  "--provider", "azure", "--azure-tenant-id", TENANT, "--azure-client-id", CLIENT, "--azure-subscription-id", SUBSCRIPTION,
  "--azure-resource-group", "rg1", "--azure-authority-host", ENDPOINT, "--azure-resource-manager", ENDPOINT,
];

/** Runs without any HYPERVISORD_AZURE_* of the test process, plus `env`. */
function hyperctl(args: string[], options: Partial<HyperctlOptions> & { server: string }) {
  const env: Record<string, string> = {};
  for (const name of Object.keys(process.env)) if (name.startsWith("HYPERVISORD_AZURE_")) env[name] = "";
  return runHyperctl(args, { ...options, env: { ...env, ...options.env } });
}

function assertNoSecret(text: string, secrets: readonly string[] = [SECRET, ENV_SECRET]): void {
  for (const secret of secrets) assert.ok(!text.includes(secret), `${secret} printed:\n${text}`);
}

describe("hyperctl --provider azure against the daemon", () => {
  let d: DaemonProcess;
  let client: GrpcJsClient;
  before(async () => {
    const env: Record<string, string> = {};
    for (const name of Object.keys(process.env)) if (name.startsWith("HYPERVISORD_AZURE_")) env[name] = "";
    d = await spawnDaemon({ env });
    client = createGrpcJsClient(d.grpcAddress);
  });
  after(async () => {
    client?.close();
    if (d) assert.equal(await d.stop(), 0, "daemon exit code");
  });

  test("export submits the connection the options describe; get, list -o wide and -o json show it without the secret", async () => {
    const run = await hyperctl(["-q", "export", "--vm", "rg1/web-01", ...AZURE_FLAGS, "--azure-client-secret", SECRET], { server: d.httpUrl });
    assert.equal(run.code, 0, run.stderr);
    const id = run.stdout.trim();
    const { job } = await client.unary("getJob", { jobId: id });
    const azure = job!.definition!.azure!;
    assert.equal(job!.definition!.provider, "azure");
    assert.deepEqual(
      [azure.tenantId, azure.clientId, azure.clientSecret, azure.subscriptionId, azure.resourceGroup, azure.authorityHost, azure.resourceManager],
      [TENANT, CLIENT, "", SUBSCRIPTION, "rg1", ENDPOINT, ENDPOINT],
    );

    const details = await hyperctl(["get", id], { server: d.httpUrl });
    assert.equal(details.code, 0, details.stderr);
    assert.match(details.stdout, /Provider:\s+azure/);
    const wide = await hyperctl(["list", "-o", "wide"], { server: d.httpUrl });
    assert.equal(wide.code, 0, wide.stderr);
    assert.match(wide.stdout, /^ID +NAME .* PROVIDER +ATTEMPT/);
    assert.match(wide.stdout.split("\n").find((line) => line.startsWith(id)) ?? "", / azure +\d/);

    const json = await hyperctl(["-o", "json", "get", id], { server: d.httpUrl });
    assert.equal(json.code, 0, json.stderr);
    const shown = JSON.parse(json.stdout) as { job: { definition: { azure: Record<string, unknown> } } };
    assert.equal(shown.job.definition.azure.clientId, CLIENT);
    assert.ok(!("clientSecret" in shown.job.definition.azure), `-o json shows an empty client secret: ${json.stdout}`);
    for (const output of [run, details, wide, json]) assertNoSecret(output.stdout + output.stderr);
    await client.unary("cancelJob", { jobId: id, reason: "test" }).catch(() => undefined);
  });

  test("the daemon's refusals come back as errors (exit 1) naming the field", async () => {
    // Valid for hyperctl (an https URL), refused by the daemon: no default connection and no secret.
    const run = await hyperctl(["export", "--vm", "web-01", ...AZURE_FLAGS], { server: d.httpUrl });
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, /definition\.azure\.client_secret: required/);
    const none = await hyperctl(["export", "--vm", "web-01", "--provider", "azure"], { server: d.httpUrl });
    assert.equal(none.code, 1, none.stderr);
    assert.match(none.stderr, /definition\.azure\.subscription_id: required/);
  });
});

describe("hyperctl --provider azure: the requests as a server receives them", () => {
  const submitted: SubmitJobRequest[] = [];
  const listed: ListVMsRequest[] = [];
  const got: GetVMRequest[] = [];
  const schedules: CreateScheduleRequest[] = [];
  let server: http.Server;
  let url: string;
  before(async () => {
    const vm = create(VirtualMachineSchema, {
      name: "web-01", path: "rg1/web-01", moref: `/subscriptions/${SUBSCRIPTION}/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/web-01`,
      numCpu: 2, memoryMb: 8192n, size: "Standard_D2s_v3", location: "westeurope", provider: "azure",
      disks: [{ label: "OS disk", capacityBytes: 64n << 20n, file: "/subscriptions/x/disks/web-01-os", sku: "Premium_LRS" }],
    });
    server = http.createServer(connectNodeAdapter({ routes: (router) => router.service(HypervisordService, {
      submitJob: async (request) => {
        submitted.push(request);
        return { created: true, job: { id: `recorded-${submitted.length}`, state: JobState.QUEUED } };
      },
      listVMs: async (request) => {
        listed.push(request);
        return { vms: [vm] };
      },
      getVM: async (request) => {
        got.push(request);
        return { vm };
      },
      createSchedule: async (request) => {
        schedules.push(request);
        return { schedule: { id: "recorded-schedule", name: request.schedule?.name ?? "", cron: request.schedule?.cron ?? "" } };
      },
    }) }));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  test("the secret from HYPERVISORD_AZURE_CLIENT_SECRET; --azure-client-secret wins over it; neither option: no connection sent", async () => {
    const fromEnv = await hyperctl(["export", "--vm", "web-01", ...AZURE_FLAGS], { server: url, env: { HYPERVISORD_AZURE_CLIENT_SECRET: ENV_SECRET } });
    assert.equal(fromEnv.code, 0, fromEnv.stderr);
    const fromFlag = await hyperctl(["export", "--vm", "web-01", ...AZURE_FLAGS, "--azure-client-secret", SECRET], { server: url, env: { HYPERVISORD_AZURE_CLIENT_SECRET: ENV_SECRET } });
    assert.equal(fromFlag.code, 0, fromFlag.stderr);
    // The environment's secret alone is no connection: the daemon's default is used.
    const defaults = await hyperctl(["export", "--vm", "web-01", "--provider", "azure"], { server: url, env: { HYPERVISORD_AZURE_CLIENT_SECRET: ENV_SECRET } });
    assert.equal(defaults.code, 0, defaults.stderr);
    assert.deepEqual(submitted.slice(-3).map((r) => r.definition!.azure?.clientSecret), [ENV_SECRET, SECRET, undefined]);
    const azure = submitted.at(-2)!.definition!.azure!;
    assert.deepEqual([azure.tenantId, azure.clientId, azure.subscriptionId, azure.resourceGroup, azure.authorityHost, azure.resourceManager],
      [TENANT, CLIENT, SUBSCRIPTION, "rg1", ENDPOINT, ENDPOINT]);
    assert.equal(submitted.at(-2)!.definition!.provider, "azure");
    assert.equal(submitted.at(-2)!.definition!.vsphere, undefined);
    for (const run of [fromEnv, fromFlag, defaults]) assertNoSecret(run.stdout + run.stderr);
  });

  test("vms list and vms get send the connection; get shows size, location and disk SKU", async () => {
    const list = await hyperctl(["vms", "list", ...AZURE_FLAGS, "--folder", "rg1"], { server: url, env: { HYPERVISORD_AZURE_CLIENT_SECRET: ENV_SECRET } });
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /web-01/);
    assert.equal(listed.at(-1)!.provider, "azure");
    assert.equal(listed.at(-1)!.folder, "rg1");
    assert.equal(listed.at(-1)!.azure?.clientSecret, ENV_SECRET);
    assert.equal(listed.at(-1)!.azure?.subscriptionId, SUBSCRIPTION);

    const get = await hyperctl(["vms", "get", "rg1/web-01", ...AZURE_FLAGS, "--azure-client-secret", SECRET], { server: url });
    assert.equal(get.code, 0, get.stderr);
    assert.equal(got.at(-1)!.vm, "rg1/web-01");
    assert.equal(got.at(-1)!.azure?.clientSecret, SECRET);
    assert.match(get.stdout, /Size:\s+Standard_D2s_v3/);
    assert.match(get.stdout, /Location:\s+westeurope/);
    assert.match(get.stdout, /DISK +CAPACITY +SKU +FILE\nOS disk +64(\.0)? MiB +Premium_LRS/);
    const json = await hyperctl(["-o", "json", "vms", "get", "rg1/web-01", "--provider", "azure"], { server: url });
    const vm = (JSON.parse(json.stdout) as { vm: { size: string; location: string; disks: { sku: string }[] } }).vm;
    assert.deepEqual([vm.size, vm.location, vm.disks[0]!.sku], ["Standard_D2s_v3", "westeurope", "Premium_LRS"]);
    for (const run of [list, get, json]) assertNoSecret(run.stdout + run.stderr);
  });

  test("schedules create sends the template's connection", async () => {
    const run = await hyperctl(["schedules", "create", "nightly-az", "0 2 * * *", "--vm", "rg1/web-01", ...AZURE_FLAGS], {
      server: url, env: { HYPERVISORD_AZURE_CLIENT_SECRET: ENV_SECRET },
    });
    assert.equal(run.code, 0, run.stderr);
    const template = schedules.at(-1)!.schedule!.jobTemplate!;
    assert.equal(template.provider, "azure");
    assert.equal(template.azure?.clientSecret, ENV_SECRET);
    assert.equal(template.azure?.tenantId, TENANT);
    assertNoSecret(run.stdout + run.stderr);
  });
});

describe("hyperctl --azure-* usage errors (exit 2, naming the option, before any call)", () => {
  const cases: [string[], RegExp][] = [
    [["--azure-subscription-id", "not-a-guid"], /--azure-subscription-id: expected a subscription GUID, got "not-a-guid"/],
    [["--azure-client-id", "app"], /--azure-client-id: expected an application \(client\) id GUID/],
    [["--azure-tenant-id", "bad tenant!"], /--azure-tenant-id: expected a tenant GUID or domain/],
    [["--azure-authority-host", "ftp://login.example.com"], /--azure-authority-host: expected an https URL/],
    [["--azure-resource-manager", "not a url"], /--azure-resource-manager: expected an https URL/],
    [["--azure-resource-group", "rg/1"], /--azure-resource-group: expected a resource group name/],
    [["--azure-client-secret", ""], /--azure-client-secret: empty/],
  ];
  const base = ["--provider", "azure", "--azure-tenant-id", TENANT, "--azure-client-id", CLIENT, "--azure-subscription-id", SUBSCRIPTION];
  /** base with the case's option replacing the same option of base. */
  const withCase = (option: string[]) => {
    const args = [...base];
    const at = args.indexOf(option[0]!);
    if (at >= 0) args.splice(at, 2);
    return [...args, ...option];
  };

  for (const [option, message] of cases) {
    test(`${option[0]} ${JSON.stringify(option[1])}`, async () => {
      for (const command of [["export", "--vm", "web-01"], ["vms", "list"], ["vms", "get", "web-01"], ["schedules", "create", "s", "0 2 * * *", "--vm", "web-01"]]) {
        const run = await hyperctl([...command, ...withCase(option)], { server: NO_DAEMON });
        assert.equal(run.code, 2, `${command.join(" ")}: ${run.stderr}`);
        assert.match(run.stderr, message);
      }
    });
  }

  test("a connection without a subscription, --azure-* without --provider azure, vSphere options with it", async () => {
    const noSubscription = await hyperctl(["export", "--vm", "web-01", "--provider", "azure", "--azure-tenant-id", TENANT, "--azure-client-secret", SECRET], { server: NO_DAEMON });
    assert.equal(noSubscription.code, 2, noSubscription.stderr);
    assert.match(noSubscription.stderr, /--azure-subscription-id is required with the other --azure-\* options/);
    assertNoSecret(noSubscription.stdout + noSubscription.stderr);
    const noProvider = await hyperctl(["vms", "list", "--azure-subscription-id", SUBSCRIPTION], { server: NO_DAEMON });
    assert.equal(noProvider.code, 2, noProvider.stderr);
    assert.match(noProvider.stderr, /--azure-subscription-id needs --provider azure/);
    const mixed = await hyperctl(["export", "--vm", "web-01", ...base, "--vsphere-url", "https://vc.example.com/sdk"], { server: NO_DAEMON });
    assert.equal(mixed.code, 2, mixed.stderr);
    assert.match(mixed.stderr, /--vsphere-url is a vSphere option; with --provider azure use the --azure-\* options/);
  });

  test("--help lists the options and says where the secret may come from", async () => {
    const help = await hyperctl(["export", "--help"], { server: NO_DAEMON });
    assert.equal(help.code, 0, help.stderr);
    for (const option of ["--azure-tenant-id", "--azure-client-id", "--azure-client-secret", "--azure-subscription-id", "--azure-resource-group", "--azure-authority-host", "--azure-resource-manager"]) {
      assert.ok(help.stdout.includes(option), `${option} in export --help`);
    }
    assert.match(help.stdout.replace(/\s+/g, " "), /HYPERVISORD_AZURE_CLIENT_SECRET environment variable, which hyperctl reads/);
  });
});
