import type { VSphereSession } from "./session.ts";
import { child, children, element, moRefOf, textOf, type MoRef, type XmlElement, type XmlNode } from "./xml.ts";

/** One object's retrieved properties: path -> the <val> element. */
export interface ObjectContent {
  obj: MoRef;
  props: Map<string, XmlNode>;
}

export function propertySpec(type: string, paths: readonly string[]): XmlElement {
  return element([["type", type], ["all", false], ["pathSet", paths]]);
}

/** Every object of the given types under `container` (recursively), through a ContainerView. */
export async function* retrieveFromContainer(
  session: VSphereSession, container: MoRef, specs: readonly { type: string; paths: readonly string[] }[], signal: AbortSignal, pageSize = 500,
): AsyncGenerator<ObjectContent[]> {
  const view = moRefOf(child(await session.call("CreateContainerView", [
    ["_this", session.content.viewManager], ["container", container], ["type", specs.map((s) => s.type)], ["recursive", true],
  ], signal), "returnval"))!;
  try {
    const filter = element([
      ["propSet", specs.map((s) => propertySpec(s.type, s.paths))],
      ["objectSet", element([
        ["obj", view], ["skip", true],
        ["selectSet", element([["name", "traverseView"], ["type", "ContainerView"], ["path", "view"], ["skip", false]], "TraversalSpec")],
      ])],
    ]);
    yield* retrievePaged(session, filter, signal, pageSize);
  } finally {
    await session.call("DestroyView", [["_this", view]], AbortSignal.timeout(10_000)).catch(() => undefined);
  }
}

/** RetrievePropertiesEx, then ContinueRetrievePropertiesEx while the server hands out a token. */
export async function* retrievePaged(session: VSphereSession, filter: XmlElement, signal: AbortSignal, pageSize: number): AsyncGenerator<ObjectContent[]> {
  const collector = session.content.propertyCollector;
  let result = child(await session.call("RetrievePropertiesEx", [
    ["_this", collector], ["specSet", filter], ["options", element([["maxObjects", pageSize]])],
  ], signal), "returnval");
  for (;;) {
    const page = children(result, "objects").map(objectContent);
    if (page.length > 0) yield page;
    const token = textOf(result, "token");
    if (!token) return;
    result = child(await session.call("ContinueRetrievePropertiesEx", [["_this", collector], ["token", token]], signal), "returnval");
  }
}

/** Properties of one object; undefined when it does not exist (ManagedObjectNotFound is left to the caller). */
export async function retrieveOne(session: VSphereSession, obj: MoRef, paths: readonly string[], signal: AbortSignal): Promise<ObjectContent | undefined> {
  const filter = element([["propSet", [propertySpec(obj.type, paths)]], ["objectSet", element([["obj", obj], ["skip", false]])]]);
  for await (const page of retrievePaged(session, filter, signal, 1)) return page[0];
  return undefined;
}

function objectContent(node: XmlNode): ObjectContent {
  const props = new Map<string, XmlNode>();
  for (const set of children(node, "propSet")) {
    const val = child(set, "val");
    if (val) props.set(textOf(set, "name"), val);
  }
  return { obj: moRefOf(child(node, "obj"))!, props };
}
