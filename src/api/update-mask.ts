import type { FieldMask } from "@bufbuild/protobuf/wkt";
import { InvalidArgumentError, quoteInput } from "../errors.ts";

/**
 * Which of `updatable` an Update call changes: the update_mask paths when there is a mask (snake_case or
 * lowerCamel), else the fields the request gives (`given`), so that an omitted field is left as it is.
 */
export function fieldsToUpdate<F extends string>(updatable: readonly F[], mask: FieldMask | undefined, given: () => Record<F, boolean>): Record<F, boolean> {
  if (!mask || mask.paths.length === 0) return given();
  const fields = Object.fromEntries(updatable.map((f) => [f, false])) as Record<F, boolean>;
  mask.paths.forEach((path, i) => {
    const name = path.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
    if (!(updatable as readonly string[]).includes(name)) {
      throw new InvalidArgumentError(`update_mask.paths[${i}]`, `${quoteInput(path)} cannot be updated; use one of ${updatable.join(", ")}`);
    }
    fields[name as F] = true;
  });
  return fields;
}

/** Every field set: what a Create call applies. */
export function allFields<F extends string>(updatable: readonly F[]): Record<F, boolean> {
  return Object.fromEntries(updatable.map((f) => [f, true])) as Record<F, boolean>;
}
