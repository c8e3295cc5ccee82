/**
 * The ARM API versions hypervisord speaks, in one place: a version is a contract (field names, LRO behaviour),
 * so moving to a newer one is a deliberate change tested against the stand-in, never a side effect.
 */
/** Microsoft.Compute virtualMachines and locations/vmSizes. */
export const COMPUTE_API_VERSION = "2024-07-01";
/** Microsoft.Compute disks and snapshots (beginGetAccess / endGetAccess included). */
export const DISKS_API_VERSION = "2024-03-02";
/** Microsoft.Network networkInterfaces. */
export const NETWORK_API_VERSION = "2024-05-01";
