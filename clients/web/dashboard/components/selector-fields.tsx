import type { MessageInitShape } from "@bufbuild/protobuf";
import { PowerState, type JobDefinition, type VmSelectorSchema } from "../../index.ts";
import { formText } from "../actions.ts";
import { Field } from "./field.tsx";

const POWER_STATES: [string, PowerState][] = [["powered on", PowerState.POWERED_ON], ["powered off", PowerState.POWERED_OFF], ["suspended", PowerState.SUSPENDED]];

/**
 * "Several VMs" of the export form: a folder and/or a name pattern, power states, subfolders and a cap
 * on the batch's parallel jobs. The daemon makes a batch of them, a job per VM.
 */
export function SelectorFields({ initial }: { initial?: JobDefinition }) {
  const s = initial?.vmSelector;
  return (
    <>
      <div className="row">
        <Field label="Folder" hint="inventory path, e.g. /DC0/vm/production">
          <input type="text" name="selector_folder" defaultValue={s?.folder} placeholder="/DC0/vm/production" />
        </Field>
        <Field label="Name pattern" hint="wildcards * and ?; with a folder, both must match">
          <input type="text" name="selector_name_glob" defaultValue={s?.nameGlob} placeholder="web-*" />
        </Field>
      </div>
      <div className="row" role="group" aria-label="Only VMs that are">
        <span className="field-label">Only VMs that are (none: any):</span>
        {POWER_STATES.map(([label, state]) => (
          <Field key={state} label={label} inline>
            <input type="checkbox" name="selector_power_states" value={String(state)} defaultChecked={s?.powerStates.includes(state)} />
          </Field>
        ))}
      </div>
      <div className="row">
        <Field label="Include subfolders" inline><input type="checkbox" name="selector_recursive" defaultChecked={s?.recursive !== false} /></Field>
        <Field label="At most in parallel" hint="the batch's own cap; empty: the daemon's slots only">
          <input type="number" name="max_parallel" min={0} max={1000} defaultValue={initial?.maxParallel || undefined} />
        </Field>
      </div>
    </>
  );
}

/** The definition's vm_selector and max_parallel from the form; the daemon checks them and names the field it refuses. */
export function selectorFromForm(form: FormData): { vmSelector: MessageInitShape<typeof VmSelectorSchema>; maxParallel: number } {
  const maxParallel = formText(form, "max_parallel");
  if (maxParallel && !/^\d+$/.test(maxParallel)) throw new Error(`max_parallel: "${maxParallel}" is not a whole number`);
  return {
    vmSelector: {
      folder: formText(form, "selector_folder"),
      nameGlob: formText(form, "selector_name_glob"),
      powerStates: form.getAll("selector_power_states").map((v) => Number(v) as PowerState),
      recursive: form.get("selector_recursive") === "on" ? undefined : false,
    },
    maxParallel: maxParallel ? Number(maxParallel) : 0,
  };
}
