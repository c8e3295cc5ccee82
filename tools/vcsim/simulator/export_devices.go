package simulator

import (
	"fmt"
	"os"
	"path"
	"reflect"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"
)

// exportItem is one file an export lease serves.
type exportItem struct {
	key      string // the device key, as hosts write it: "/vm-57/VirtualLsiLogicController0:0", "/vm-57/nvram"
	name     string // the last part of its URL: "disk-0.vmdk", or the NVRAM's own name
	file     string // the local file served
	disk     bool
	capacity int64 // bytes, disks only
}

// diskKey is a disk's device key in a lease: the VM, its controller's type and bus, and its unit number.
func diskKey(vm types.ManagedObjectReference, devices object.VirtualDeviceList, disk *types.VirtualDisk) string {
	controller := devices.FindByKey(disk.ControllerKey)
	kind, bus := "VirtualController", int32(0)
	if c, ok := controller.(types.BaseVirtualController); ok {
		kind, bus = reflect.TypeOf(controller).Elem().Name(), c.GetVirtualController().BusNumber
	}
	unit := int32(0)
	if disk.UnitNumber != nil {
		unit = *disk.UnitNumber
	}
	return fmt.Sprintf("/%s/%s%d:%d", vm.Value, kind, bus, unit)
}

func nvramKey(vm types.ManagedObjectReference) string { return "/" + vm.Value + "/nvram" }

// disksOf lists the virtual disks of a device list, in device order (the order of the lease and the OVF).
func disksOf(devices object.VirtualDeviceList) []*types.VirtualDisk {
	var disks []*types.VirtualDisk
	for _, d := range devices.SelectByType((*types.VirtualDisk)(nil)) {
		disks = append(disks, d.(*types.VirtualDisk))
	}
	return disks
}

func diskFileName(disk *types.VirtualDisk) string {
	if b, ok := disk.Backing.(types.BaseVirtualDeviceFileBackingInfo); ok {
		return b.GetVirtualDeviceFileBackingInfo().FileName
	}
	return ""
}

// nvramFile is the VM's NVRAM beside its .vmx (vcsim makes one for every VM, as hosts do).
func nvramFile(vm *VirtualMachine) string {
	vmx, ok := localFile(vm, vm.Config.Files.VmPathName)
	if !ok {
		return ""
	}
	if path.Ext(vmx) == ".vmx" {
		vmx = path.Dir(vmx)
	}
	return path.Join(vmx, vm.Name+".nvram")
}

// liveItems: the VM's own disks (their current files) and its NVRAM when it has one, for ExportVm.
func liveItems(vm *VirtualMachine) ([]exportItem, types.BaseMethodFault) {
	devices := object.VirtualDeviceList(vm.Config.Hardware.Device)
	var items []exportItem
	for i, disk := range disksOf(devices) {
		file, ok := localFile(vm, diskFileName(disk))
		if !ok {
			return nil, &types.FileNotFound{FileFault: types.FileFault{File: diskFileName(disk)}}
		}
		items = append(items, exportItem{key: diskKey(vm.Self, devices, disk), name: fmt.Sprintf("disk-%d.vmdk", i), file: file, disk: true, capacity: disk.CapacityInKB * 1024})
	}
	if nvram := nvramFile(vm); nvram != "" {
		if _, err := os.Stat(nvram); err == nil {
			items = append(items, exportItem{key: nvramKey(vm.Self), name: path.Base(nvram), file: nvram})
		}
	}
	return items, nil
}

// NvramFile is the VM's NVRAM file on this machine ("" when it has no .vmx path), for the inventory line.
func NvramFile(vm *VirtualMachine) string { return nvramFile(vm) }

// DiskFile is the file on this machine behind a virtual disk of the VM, for the inventory line.
func DiskFile(vm *VirtualMachine, disk *types.VirtualDisk) (string, bool) {
	return localFile(vm, diskFileName(disk))
}
