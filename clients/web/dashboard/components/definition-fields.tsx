import { useState } from "react";
import { create } from "@bufbuild/protobuf";
import { ExportFormat, JobDefinitionSchema, PowerState, type GetCapabilitiesResponse, type JobDefinition, type Profile, type VirtualMachine } from "../../index.ts";
import { formText } from "../actions.ts";
import { formatBytes, formatLabels, parseLabels } from "../format.ts";
import { ErrorMessage } from "./error-message.tsx";
import { Field } from "./field.tsx";
import { SelectorFields, selectorFromForm } from "./selector-fields.tsx";
import { useClient } from "../session.tsx";

const DEVICES = ["cdrom", "floppy", "serial", "parallel", "usb", "sound"];

/**
 * The export settings of a job, shared by "Export & convert" and schedule templates. Uncontrolled
 * inputs with names: definitionFromForm() reads them back. `initial` pre-fills (never a password).
 */
export function DefinitionFields({ initial, capabilities, profiles }: { initial?: JobDefinition; capabilities?: GetCapabilitiesResponse; profiles?: Profile[] }) {
  const providers = capabilities?.providers ?? [];
  const [provider, setProvider] = useState(initial?.provider || providers[0]?.name || "");
  const [vm, setVm] = useState(initial?.vm ?? "");
  const [target, setTarget] = useState(initial?.vmSelector ? "selector" : "vm");
  const [format, setFormat] = useState(initial?.format === ExportFormat.OVA ? "ova" : "ovf");
  const discovery = providers.find((p) => p.name === (provider || providers[0]?.name))?.discovery ?? false;
  const isVsphere = (provider || providers[0]?.name) === "vsphere";
  const roots = capabilities?.allowedOutputRoots ?? [];
  return (
    <>
      <fieldset>
        <legend>Source</legend>
        <div className="row">
          <Field label="Provider">
            <select name="provider" value={provider} onChange={(e) => setProvider(e.target.value)}>
              {providers.map((p) => <option key={p.name} value={p.name}>{p.name}</option>)}
            </select>
          </Field>
          <Field label="Job name" hint="optional; shown in lists and webhooks">
            <input type="text" name="name" defaultValue={initial?.name} />
          </Field>
        </div>
        {isVsphere && (
          <details open={!!initial?.vsphere?.url}>
            <summary>vCenter connection (empty: the daemon's configured default)</summary>
            <div className="row">
              <Field label="vCenter URL"><input type="url" name="vsphere_url" placeholder="https://vcenter.example.com/sdk" defaultValue={initial?.vsphere?.url} /></Field>
              <Field label="Username"><input type="text" name="vsphere_username" autoComplete="off" defaultValue={initial?.vsphere?.username} /></Field>
              <Field label="Password" hint="sent with the request, stored encrypted by the daemon, never shown again">
                <input type="password" name="vsphere_password" autoComplete="new-password" />
              </Field>
            </div>
            <div className="row">
              <Field label="Skip TLS verification" inline><input type="checkbox" name="vsphere_insecure" defaultChecked={initial?.vsphere?.insecure} /></Field>
              <Field label="Certificate thumbprint"><input type="text" name="vsphere_thumbprint" placeholder="SHA-1 or SHA-256 hex" defaultValue={initial?.vsphere?.thumbprint} /></Field>
            </div>
          </details>
        )}
        <div className="row" role="radiogroup" aria-label="What to export">
          <Field label="One VM" inline><input type="radio" name="target" value="vm" checked={target === "vm"} onChange={() => setTarget("vm")} /></Field>
          <Field label="Several VMs (a batch: a job per VM)" inline><input type="radio" name="target" value="selector" checked={target === "selector"} onChange={() => setTarget("selector")} /></Field>
        </div>
        {target === "selector" ? <SelectorFields initial={initial} /> : (
          <>
            <Field label="VM" hint="inventory path, name, managed object id or UUID; or pick one below">
              <input type="text" name="vm" required value={vm} onChange={(e) => setVm(e.target.value)} placeholder="/DC0/vm/web-01" />
            </Field>
            {discovery && <VmPicker provider={provider} onPick={setVm} selected={vm} />}
          </>
        )}
      </fieldset>
      <fieldset>
        <legend>Package</legend>
        <div className="row">
          <Field label="Output directory" hint={roots.length ? <>relative paths go under <code>{roots[0]}</code>; allowed: {roots.join(", ")}</> : undefined}>
            <input type="text" name="output_dir" defaultValue={initial?.outputDir} placeholder="nightly/web-01" />
          </Field>
          {profiles && profiles.length > 0 && (
            <Field label="Profile" hint="named settings; fields set here win">
              <select name="profile" defaultValue={initial?.profile ?? ""}>
                <option value="">none</option>
                {profiles.map((p) => <option key={p.name} value={p.name}>{p.name}{p.description ? ` – ${p.description}` : ""}</option>)}
              </select>
            </Field>
          )}
        </div>
        <div className="row" role="radiogroup" aria-label="Format">
          <Field label="OVF directory" inline><input type="radio" name="format" value="ovf" checked={format === "ovf"} onChange={() => setFormat("ovf")} /></Field>
          <Field label="OVA file" inline><input type="radio" name="format" value="ova" checked={format === "ova"} onChange={() => setFormat("ova")} /></Field>
          <Field label="Compress (gzip)" inline><input type="checkbox" name="compress" defaultChecked={initial?.compress} /></Field>
          <Field label="Compression level"><input type="number" name="compression_level" min={0} max={9} placeholder="6" defaultValue={initial?.compressionLevel} /></Field>
        </div>
        <div className="row">
          <Field label="Convert disks to" hint="with qemu-img, after the export">
            <select name="convert_to" defaultValue={initial?.convertTo ?? ""}>
              <option value="">no conversion</option>
              {(capabilities?.conversions ?? []).map((c) => (
                <option key={c.format} value={c.format} disabled={!c.available}>{c.format}{c.available ? "" : ` (unavailable: ${c.reason})`}</option>
              ))}
            </select>
          </Field>
          <Field label="Verify converted disks" inline hint="compare each converted disk with its source"><input type="checkbox" name="verify" defaultChecked={initial?.verify} /></Field>
          <Field label="Manifest">
            <select name="manifest" defaultValue={initial?.generateManifest === false ? "none" : initial?.manifestAlgorithm || "sha256"}>
              <option value="sha256">SHA-256</option>
              <option value="sha1">SHA-1</option>
              <option value="none">none</option>
            </select>
          </Field>
        </div>
      </fieldset>
      <details>
        <summary>More settings</summary>
        <fieldset>
          <div className="row">
            <Field label="Priority">
              <select name="priority" defaultValue={initial?.priority ?? ""}>
                <option value="">default</option>
                {(capabilities?.priorities ?? []).map((p) => <option key={p} value={p}>{p}</option>)}
              </select>
            </Field>
            <Field label="Parallel downloads"><input type="number" name="parallel_downloads" min={1} max={32} defaultValue={initial?.parallelDownloads || undefined} /></Field>
            <Field label="Bandwidth limit (MiB/s)"><input type="number" name="bandwidth_mib" min={0} step="any" defaultValue={initial?.bandwidthLimit ? Number(initial.bandwidthLimit) / 2 ** 20 : undefined} /></Field>
          </div>
          <Field label="Labels" hint="key=value, separated by commas">
            <input type="text" name="labels" defaultValue={formatLabels(initial?.labels ?? {})} placeholder="team=web, tier=1" />
          </Field>
          <div className="row" role="group" aria-label="Remove devices from the descriptor">
            <span className="field-label">Remove from the descriptor:</span>
            {DEVICES.map((d) => <Field key={d} label={d} inline><input type="checkbox" name="remove_devices" value={d} defaultChecked={initial?.removeDevices.includes(d)} /></Field>)}
          </div>
          <Field label="Include ISO and floppy images" inline><input type="checkbox" name="include_image_files" defaultChecked={initial?.includeImageFiles} /></Field>
          <Field label="Keep partial files if the export fails or is cancelled" inline><input type="checkbox" name="keep_partial" defaultChecked={initial?.keepPartial} /></Field>
        </fieldset>
      </details>
    </>
  );
}

/** The JobDefinition the fields describe; throws an Error naming the field for input the API would refuse anyway. */
export function definitionFromForm(form: FormData): JobDefinition {
  const text = (name: string) => formText(form, name);
  const int = (name: string) => {
    const value = text(name);
    if (value === "") return undefined;
    const n = Number(value);
    if (!Number.isInteger(n)) throw new Error(`${name}: "${value}" is not a whole number`);
    return n;
  };
  const manifest = text("manifest");
  const bandwidth = text("bandwidth_mib");
  return create(JobDefinitionSchema, {
    name: text("name"),
    provider: text("provider"),
    ...(text("target") === "selector" ? selectorFromForm(form) : { vm: text("vm") }),
    vsphere: vsphereFromForm(form),
    outputDir: text("output_dir"),
    profile: text("profile"),
    format: text("format") === "ova" ? ExportFormat.OVA : ExportFormat.OVF,
    compress: form.get("compress") === "on",
    compressionLevel: int("compression_level"),
    convertTo: text("convert_to"),
    verify: form.get("verify") === "on",
    manifestAlgorithm: manifest === "none" ? "" : manifest,
    generateManifest: manifest === "none" ? false : undefined,
    priority: text("priority"),
    parallelDownloads: int("parallel_downloads") ?? 0,
    bandwidthLimit: bandwidth ? BigInt(Math.round(Number(bandwidth) * 2 ** 20)) : 0n,
    labels: parseLabels(text("labels"), "labels"),
    removeDevices: form.getAll("remove_devices").map(String),
    includeImageFiles: form.get("include_image_files") === "on",
    keepPartial: form.get("keep_partial") === "on",
  });
}

/** The vCenter connection typed into the form, or undefined (the daemon's default) when its URL is empty. */
function vsphereFromForm(form: FormData) {
  const text = (name: string) => formText(form, name);
  const url = text("vsphere_url");
  if (!url) return undefined;
  // The password is sent as typed: spaces may be part of it.
  return { url, username: text("vsphere_username"), password: String(form.get("vsphere_password") ?? ""), insecure: form.get("vsphere_insecure") === "on", thumbprint: text("vsphere_thumbprint") };
}

/** ListVMs of the chosen provider (with the connection typed above, read from the form), filtered by a name pattern. */
function VmPicker({ provider, selected, onPick }: { provider: string; selected: string; onPick(vm: string): void }) {
  const client = useClient();
  const [vms, setVms] = useState<VirtualMachine[]>();
  const [error, setError] = useState<unknown>();
  const [loading, setLoading] = useState(false);
  const [pattern, setPattern] = useState("");
  const load = async (button: HTMLButtonElement) => {
    const vsphere = vsphereFromForm(new FormData(button.form!));
    setLoading(true);
    setError(undefined);
    try {
      const response = await client.listVMs({ provider, vsphere, namePattern: pattern.trim() });
      setVms(response.vms);
    } catch (err) {
      setError(err);
    } finally {
      setLoading(false);
    }
  };
  return (
    <div className="vm-picker">
      <div className="row">
        <Field label="Find VMs by name" hint="wildcards * and ?; empty lists all">
          <input type="search" value={pattern} onChange={(e) => setPattern(e.target.value)} placeholder="web-*" />
        </Field>
        <button type="button" onClick={(e) => void load(e.currentTarget)} disabled={loading}>{loading ? "Loading…" : "List VMs"}</button>
      </div>
      <ErrorMessage error={error} prefix="ListVMs" />
      {vms && (
        <div className="vm-list">
          <table aria-label="Virtual machines">
            <thead><tr><th>Pick</th><th>Name</th><th>Path</th><th>Power</th><th>CPU / memory</th><th className="num">Disks</th></tr></thead>
            <tbody>
              {vms.map((v) => (
                <tr key={v.moref || v.path}>
                  <td><input type="radio" name="vm_pick" aria-label={`Export ${v.name}`} checked={selected === v.path} onChange={() => onPick(v.path)} /></td>
                  <td>{v.name}</td>
                  <td className="mono">{v.path}</td>
                  <td>{(PowerState[v.powerState] ?? "").toLowerCase().replace("_", " ")}</td>
                  <td>{v.numCpu} vCPU, {formatBytes(v.memoryMb * 2n ** 20n)}</td>
                  <td className="num">{v.disks.length} ({formatBytes(v.disks.reduce((s, d) => s + d.capacityBytes, 0n))})</td>
                </tr>
              ))}
            </tbody>
          </table>
          {vms.length === 0 && <p className="empty">No VM matches.</p>}
        </div>
      )}
    </div>
  );
}
