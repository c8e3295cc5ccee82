/** A handful of real sizes as `GET .../locations/{loc}/vmSizes` lists them. */
export const VM_SIZES = [
  { name: "Standard_B1s", numberOfCores: 1, osDiskSizeInMB: 1047552, resourceDiskSizeInMB: 4096, memoryInMB: 1024, maxDataDiskCount: 2 },
  { name: "Standard_B2s", numberOfCores: 2, osDiskSizeInMB: 1047552, resourceDiskSizeInMB: 8192, memoryInMB: 4096, maxDataDiskCount: 4 },
  { name: "Standard_D2s_v3", numberOfCores: 2, osDiskSizeInMB: 1047552, resourceDiskSizeInMB: 16384, memoryInMB: 8192, maxDataDiskCount: 4 },
  { name: "Standard_D4s_v3", numberOfCores: 4, osDiskSizeInMB: 1047552, resourceDiskSizeInMB: 32768, memoryInMB: 16384, maxDataDiskCount: 8 },
  { name: "Standard_D2s_v5", numberOfCores: 2, osDiskSizeInMB: 1047552, resourceDiskSizeInMB: 0, memoryInMB: 8192, maxDataDiskCount: 4 },
  { name: "Standard_E2s_v3", numberOfCores: 2, osDiskSizeInMB: 1047552, resourceDiskSizeInMB: 32768, memoryInMB: 16384, maxDataDiskCount: 4 },
  { name: "Standard_F2s_v2", numberOfCores: 2, osDiskSizeInMB: 1047552, resourceDiskSizeInMB: 16384, memoryInMB: 4096, maxDataDiskCount: 4 },
];
