import { PowerState as PowerStatePb } from "../../gen/hypervisord/v1/vm_pb.js";
import type { PowerState } from "../domain/vm.ts";

const POWER_TO_PB: Record<PowerState, PowerStatePb> = {
  poweredOff: PowerStatePb.POWERED_OFF,
  poweredOn: PowerStatePb.POWERED_ON,
  suspended: PowerStatePb.SUSPENDED,
  unknown: PowerStatePb.UNSPECIFIED,
};

export function powerStateToPb(state: PowerState): PowerStatePb {
  return POWER_TO_PB[state];
}

export function powerStateFromPb(state: PowerStatePb): PowerState | undefined {
  return (Object.entries(POWER_TO_PB) as [PowerState, PowerStatePb][]).find(([, v]) => v === state && v !== PowerStatePb.UNSPECIFIED)?.[0];
}
