import { child, moRefOf, textOf, type MoRef, type XmlNode } from "./xml.ts";

/** The managed objects a session works with, from RetrieveServiceContent. */
export interface ServiceContent {
  rootFolder: MoRef;
  propertyCollector: MoRef;
  viewManager: MoRef;
  sessionManager: MoRef;
  searchIndex: MoRef;
  ovfManager?: MoRef;
  apiVersion: string;
  apiType: string;
  fullName: string;
}

export const SERVICE_INSTANCE: MoRef = { type: "ServiceInstance", value: "ServiceInstance" };

export function serviceContentOf(response: XmlNode): ServiceContent {
  const rv = child(response, "returnval");
  const ref = (name: string): MoRef => {
    const found = moRefOf(child(rv, name));
    if (!found) throw new Error(`ServiceContent has no ${name}`);
    return found;
  };
  const about = child(rv, "about");
  return {
    rootFolder: ref("rootFolder"),
    propertyCollector: ref("propertyCollector"),
    viewManager: ref("viewManager"),
    sessionManager: ref("sessionManager"),
    searchIndex: ref("searchIndex"),
    ovfManager: moRefOf(child(rv, "ovfManager")),
    apiVersion: textOf(about, "apiVersion"),
    apiType: textOf(about, "apiType"),
    fullName: textOf(about, "fullName"),
  };
}
