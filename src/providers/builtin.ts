import type { Logger } from "pino";
import type { DaemonConfig } from "../config/load-config.ts";
import { createConverter } from "../export/convert.ts";
import { resolveQemuImg } from "../export/qemu-img.ts";
import type { Provider } from "./provider.ts";
import { createVSphereProvider } from "./vsphere/vsphere-provider.ts";

/** The providers compiled into the daemon. */
export function builtinProviders(config: DaemonConfig, logger: Logger): Provider[] {
  const qemuImg = resolveQemuImg(config.conversion.qemuImg);
  const converter = "path" in qemuImg
    ? createConverter({ qemuImg: qemuImg.path, maxConcurrent: config.conversion.maxConcurrent, logger: logger.child({ component: "qemu-img" }) })
    : undefined;
  return [
    createVSphereProvider({
      defaultConnection: config.defaultVSphere,
      maxConnections: config.vsphere.maxConnections,
      sessionIdleTimeoutMs: config.vsphere.sessionIdleTimeoutMs,
      maxTransfersPerHost: config.vsphere.maxTransfersPerHost,
      converter,
      logger: logger.child({ provider: "vsphere" }),
    }),
  ];
}
