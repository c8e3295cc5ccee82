// Defects a new user hit outside vSphere (issue 15), over the real wire against the real daemon: where a relative
// package path is looked for, and redaction of a vCenter password that does not blank ordinary words.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { spawnDaemonWithClient } from "./support/daemon-process.ts";
import { runHyperctl } from "./support/hyperctl.ts";
import { tempDir } from "./support/temp-dir.ts";

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
      assert.ok([grpc.status.NOT_FOUND, grpc.status.INVALID_ARGUMENT].includes(err.code), err.details);
      assert.match(err.details, /is relative: resolved against the output root .*pass an absolute path\)$/);
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
