// Defects a new user hit outside vSphere (issue 15), over the real wire against the real daemon: where a relative
// package path is looked for, and redaction of a vCenter password that does not blank ordinary words.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { after, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { spawnDaemonWithClient } from "./support/daemon-process.ts";
import { runHyperctl } from "./support/hyperctl.ts";
import { tempDir } from "./support/temp-dir.ts";
import { waitFor } from "./support/wait-for.ts";
import { isFinal, waitForJob } from "./support/wait-for-job.ts";
import { startWebhookReceiver } from "./support/webhook-receiver.ts";
import { JobState } from "../gen/hypervisord/v1/job_pb.js";

const cleanups: (() => Promise<unknown> | void)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

describe("ova validate and manifest verify: relative and absolute paths", () => {
  test("an absolute path is taken as it is; a relative one resolves under the output root, and a failure says against which", async () => {
    const { daemon, client } = await spawnDaemonWithClient({}, cleanups);
    const dir = path.join(daemon.outputRoot, "pkgs");
    fs.mkdirSync(dir);
    const ova = path.join(dir, "a.ova");
    // A tar with a descriptor that references a disk the archive lacks: read, and invalid.
    fs.writeFileSync(path.join(dir, "a.ovf"), '<Envelope><References><File ovf:href="a-disk-1.vmdk" ovf:id="f1"/></References></Envelope>');
    execFileSync("tar", ["-cf", ova, "-C", dir, "a.ovf"]);
    const absolute = await client.unary("validateOva", { path: ova });
    assert.equal(absolute.valid, false);
    assert.ok(absolute.problems.length > 0);
    const relative = await client.unary("validateOva", { path: "pkgs/a.ova" });
    assert.deepEqual(relative.problems, absolute.problems, "the same file, found under the root");

    // A file relative to the caller's directory (here the test's), not under the root.
    const mine = tempDir("caller-cwd");
    fs.writeFileSync(path.join(mine, "b.ova"), "x");
    const relativeToCaller = path.relative(process.cwd(), path.join(mine, "b.ova"));
    for (const call of ["validateOva", "verifyManifest"] as const) {
      await assert.rejects(client.unary(call, { path: "missing/b.ova" }), (err: grpc.ServiceError) => {
        assert.equal(err.code, grpc.status.NOT_FOUND, err.details);
        assert.match(err.details, new RegExp(`path "missing/b\\.ova" is relative: resolved against the output root ${daemon.outputRoot.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}, not the caller's directory; pass an absolute path\\)$`));
        return true;
      });
    }
    await assert.rejects(client.unary("validateOva", { path: relativeToCaller }), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT, err.details);
      assert.match(err.details, /^path: ".*b\.ova" resolves to .*b\.ova, outside the allowed output roots/, "shown resolved against the root");
      return true;
    });
    await assert.rejects(client.unary("validateOva", { path: path.join(mine, "b.ova") }), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
      assert.match(err.details, /^path: .* outside the allowed output roots/);
      assert.doesNotMatch(err.details, /is relative/);
      return true;
    });

    // hyperctl beside a local daemon: a path relative to where the user stands means that file.
    const run = await runHyperctl(["ova", "validate", "a.ova", "-o", "json"], { server: daemon.httpUrl, cwd: dir });
    assert.equal(run.code, 1, `invalid package: exit 1\n${run.stderr}`);
    assert.deepEqual(JSON.parse(run.stdout).problems, absolute.problems, run.stderr);
    const missing = await runHyperctl(["ova", "validate", "not-here.ova"], { server: daemon.httpUrl, cwd: dir });
    assert.match(missing.stderr, /path "not-here\.ova" is relative: resolved against the output root/, "no such file here: sent as typed, and the daemon says where it looked");
  });
});

/**
 * A vCenter stand-in whose Login fault echoes the request (as a gateway or a misconfigured server may): the
 * password comes back inside a fault string, by field and as a word of its own. RetrieveServiceContent is
 * answered as vCenter does; nothing else is needed before Login.
 */
async function echoingVcenter(): Promise<{ url: string; close(): Promise<void> }> {
  const envelope = (body: string) => `<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>${body}</soapenv:Body></soapenv:Envelope>`;
  const escape = (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString();
      res.setHeader("content-type", "text/xml; charset=utf-8");
      if (body.includes("RetrieveServiceContent")) {
        res.end(envelope(`<RetrieveServiceContentResponse xmlns="urn:vim25"><returnval><rootFolder type="Folder">group-d1</rootFolder><propertyCollector type="PropertyCollector">propertyCollector</propertyCollector><viewManager type="ViewManager">ViewManager</viewManager><sessionManager type="SessionManager">SessionManager</sessionManager><searchIndex type="SearchIndex">SearchIndex</searchIndex><about><fullName>echoing stand-in</fullName><apiVersion>8.0.1.0</apiVersion><apiType>VirtualCenter</apiType></about></returnval></RetrieveServiceContentResponse>`));
        return;
      }
      const password = /<password[^>]*>([^<]*)<\/password>/.exec(body)?.[1] ?? "";
      const faultString = `Login request refused by the gateway: ${/<Login[\s\S]*<\/Login>/.exec(body)?.[0] ?? ""} (password=${password}; "${password}" was wrongly encoded)`;
      res.statusCode = 500;
      res.end(envelope(`<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>${escape(faultString)}</faultstring><detail><InvalidRequestFault xmlns="urn:vim25" xsi:type="InvalidRequest"></InvalidRequestFault></detail></soapenv:Fault>`));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/sdk`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe("the vCenter password in messages, logs and webhooks", () => {
  const SECRET = "s3cr3t-pass";

  test(`"${SECRET}" echoed by a vCenter appears nowhere: responses (gRPC and Connect JSON), history, job logs, daemon logs, webhooks`, async () => {
    const vc = await echoingVcenter();
    cleanups.push(() => vc.close());
    const receiver = await startWebhookReceiver({});
    const config = path.join(tempDir("redaction-config"), "hypervisord.yaml");
    fs.writeFileSync(config, "webhooks:\n  allow_private_targets: true\n");
    const { daemon, client } = await spawnDaemonWithClient({ args: ["--config", config] }, cleanups);
    await client.unary("createWebhook", { webhook: { url: receiver.url, events: ["job.created", "job.failed"] } });
    const vsphere = { url: vc.url, username: "backup", password: SECRET, insecure: true };

    const { job } = await client.unary("submitJob", { definition: { provider: "vsphere", vm: "/DC0/vm/web-01", vsphere, outputDir: "redaction" } });
    const failed = await waitForJob(client, job!.id, isFinal);
    assert.equal(failed.state, JobState.FAILED);
    const message = failed.error!.message;
    assert.match(message, /<password>\*\*\*<\/password>/, message);
    assert.match(message, /password=\*\*\*; "\*\*\*" was wrongly encoded\)/, "by field, and the whole secret as a word; the rest stays");
    await assert.rejects(client.unary("listVMs", { provider: "vsphere", vsphere }), (err: grpc.ServiceError) => {
      assert.match(err.details, /<password>\*\*\*<\/password>.* was wrongly encoded/);
      assert.ok(!err.details.includes(SECRET), err.details);
      return true;
    });
    await waitFor("the job.failed delivery", () => receiver.requests.some((r) => r.body.includes("job.failed")) || undefined, 15_000);

    const connect = async (method: string, body: unknown) => {
      const res = await fetch(`${daemon.httpUrl}/hypervisord.v1.HypervisordService/${method}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
      return res.text();
    };
    const seen: Record<string, string> = {
      "GetJob (gRPC)": JSON.stringify(failed, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v)),
      "GetJob (Connect JSON)": await connect("GetJob", { jobId: job!.id }),
      ListJobs: await connect("ListJobs", {}),
      GetJobHistory: await connect("GetJobHistory", { jobId: job!.id }),
      GetJobLogs: await connect("GetJobLogs", { jobId: job!.id }),
      ListAuditEvents: await connect("ListAuditEvents", {}),
      "daemon log": daemon.logs.join("\n"),
      webhooks: receiver.requests.map((r) => r.body).join("\n"),
    };
    assert.match(seen.GetJobLogs!, /was wrongly encoded/, "the job log has the failure");
    assert.match(seen["daemon log"]!, /was wrongly encoded/, "the daemon log has the failure");
    for (const [where, text] of Object.entries(seen)) assert.ok(!text.includes(SECRET), `${where} shows the password:\n${text.slice(0, 2000)}`);
  });

  test('password "wrong": only the password goes, words that contain it stay ("wrongly"); a 3-character one is redacted by field only', async () => {
    const vc = await echoingVcenter();
    cleanups.push(() => vc.close());
    const { client } = await spawnDaemonWithClient({}, cleanups);
    await assert.rejects(client.unary("listVMs", { provider: "vsphere", vsphere: { url: vc.url, username: "backup", password: "wrong", insecure: true } }), (err: grpc.ServiceError) => {
      assert.match(err.details, /\(password=\*\*\*; "\*\*\*" was wrongly encoded\)$/, err.details);
      return true;
    });
    await assert.rejects(client.unary("listVMs", { provider: "vsphere", vsphere: { url: vc.url, username: "backup", password: "was", insecure: true } }), (err: grpc.ServiceError) => {
      assert.match(err.details, /\(password=\*\*\*; "was" was wrongly encoded\)$/, err.details);
      return true;
    });
  });

  test('hyperctl prints "wrongly" whole when the password is "wrong" (a substring replacement printed "***ly")', async () => {
    const vc = await echoingVcenter();
    cleanups.push(() => vc.close());
    const { daemon } = await spawnDaemonWithClient({}, cleanups);
    const run = await runHyperctl(["vms", "list", "--vsphere-url", vc.url, "--username", "backup", "--password", "wrong", "--insecure-vsphere"], { server: daemon.httpUrl });
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /was wrongly encoded/, run.stderr);
    assert.doesNotMatch(run.stderr, /\*\*\*ly/, "no word is cut");
  });
});
