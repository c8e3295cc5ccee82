import { XMLParser } from "fast-xml-parser";

const XSI = "http://www.w3.org/2001/XMLSchema-instance";

/** An element of a parsed SOAP document: local names only, `type` is its xsi:type (resolved by namespace, not by prefix). */
export interface XmlNode {
  name: string;
  /** xsi:type without its prefix, e.g. "VirtualDisk", "string". */
  type?: string;
  /** Other attributes by local name (e.g. `type` of a ManagedObjectReference). */
  attrs: Record<string, string>;
  children: XmlNode[];
  text: string;
}

type Ordered = Record<string, unknown> & { ":@"?: Record<string, string> };

const parser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: "",
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: false,
  processEntities: true,
  // Numeric character references (&#34; &#xA;), which vim25 servers use inside escaped documents such as
  // the OVF descriptor, are only decoded in this mode.
  htmlEntities: true,
});

/** Parses a document and returns its root element. */
export function parseXml(xml: string): XmlNode {
  const top = parser.parse(xml) as Ordered[];
  const root = top.map((item) => convert(item, new Map())).find((n): n is XmlNode => n !== undefined);
  if (!root) throw new Error("empty XML document");
  return root;
}

function localName(qualified: string): string {
  const colon = qualified.indexOf(":");
  return colon < 0 ? qualified : qualified.slice(colon + 1);
}

function convert(item: Ordered, inherited: Map<string, string>): XmlNode | undefined {
  const tag = Object.keys(item).find((k) => k !== ":@");
  if (!tag || tag === "#text" || tag.startsWith("?")) return undefined;
  const rawAttrs = item[":@"] ?? {};
  let scope = inherited;
  for (const [name, value] of Object.entries(rawAttrs)) {
    if (name === "xmlns" || name.startsWith("xmlns:")) {
      if (scope === inherited) scope = new Map(inherited);
      scope.set(name === "xmlns" ? "" : name.slice(6), value);
    }
  }
  const node: XmlNode = { name: localName(tag), attrs: {}, children: [], text: "" };
  for (const [name, value] of Object.entries(rawAttrs)) {
    if (name === "xmlns" || name.startsWith("xmlns:")) continue;
    const colon = name.indexOf(":");
    if (colon > 0 && scope.get(name.slice(0, colon)) === XSI && name.slice(colon + 1) === "type") node.type = localName(value);
    else node.attrs[localName(name)] = value;
  }
  let text = "";
  for (const child of (item[tag] as Ordered[]) ?? []) {
    if ("#text" in child) text += String(child["#text"]);
    else {
      const converted = convert(child, scope);
      if (converted) node.children.push(converted);
    }
  }
  node.text = text;
  return node;
}

export function child(node: XmlNode | undefined, name: string): XmlNode | undefined {
  return node?.children.find((c) => c.name === name);
}

export function children(node: XmlNode | undefined, name: string): XmlNode[] {
  return node ? node.children.filter((c) => c.name === name) : [];
}

/** Text of a direct child, or "" when absent. */
export function textOf(node: XmlNode | undefined, name: string): string {
  return child(node, name)?.text ?? "";
}

/** Follows a dotted path of child names. */
export function path(node: XmlNode | undefined, ...names: string[]): XmlNode | undefined {
  let current = node;
  for (const name of names) current = child(current, name);
  return current;
}

// --- building requests ---------------------------------------------------------------

export function escapeXml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;" })[c]!);
}

/** A managed object reference, the vim25 way: <name type="VirtualMachine">vm-57</name>. */
export interface MoRef {
  type: string;
  value: string;
}

export function moRefOf(node: XmlNode | undefined): MoRef | undefined {
  return node ? { type: node.attrs.type ?? node.type ?? "", value: node.text } : undefined;
}

export type XmlValue = string | number | boolean | MoRef | XmlElement | readonly XmlValue[] | undefined;

/** An element with an optional xsi:type and ordered children: order matters in vim25. */
export interface XmlElement {
  xsiType?: string;
  fields: readonly (readonly [string, XmlValue])[];
}

export function element(fields: readonly (readonly [string, XmlValue])[], xsiType?: string): XmlElement {
  return { fields, xsiType };
}

/** Serializes one named value; arrays repeat the element, undefined is left out. */
export function toXml(name: string, value: XmlValue): string {
  if (value === undefined) return "";
  if (Array.isArray(value)) return value.map((v) => toXml(name, v)).join("");
  if (typeof value === "object" && "fields" in value) {
    const typeAttr = value.xsiType ? ` xsi:type="${escapeXml(value.xsiType)}"` : "";
    return `<${name}${typeAttr}>${value.fields.map(([k, v]) => toXml(k, v)).join("")}</${name}>`;
  }
  if (typeof value === "object") {
    const ref = value as MoRef;
    return `<${name} type="${escapeXml(ref.type)}">${escapeXml(ref.value)}</${name}>`;
  }
  return `<${name}>${escapeXml(String(value))}</${name}>`;
}
