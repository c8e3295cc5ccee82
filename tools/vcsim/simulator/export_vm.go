package simulator

import (
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// ExportVm: an export lease on the VM's disks (and NVRAM). As on vSphere, only a powered-off VM can be
// exported (a running one is exported through ExportSnapshot).
func (vm *VirtualMachine) ExportVm(ctx *Context, req *types.ExportVm) soap.HasFault {
	body := new(methods.ExportVmBody)
	if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOff {
		body.Fault_ = Fault("", &types.InvalidPowerState{
			RequestedState: types.VirtualMachinePowerStatePoweredOff,
			ExistingState:  vm.Runtime.PowerState,
		})
		return body
	}
	items, fault := liveItems(vm)
	if fault != nil {
		body.Fault_ = Fault("", fault)
		return body
	}
	body.Res = &types.ExportVmResponse{Returnval: newExportLease(ctx, vm.Self, items).Self}
	return body
}
