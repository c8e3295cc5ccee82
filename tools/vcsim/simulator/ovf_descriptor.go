package simulator

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// CreateDescriptor: an OVF 1.0 envelope of the VM (or of the VM as cdp.snapshot has it) in the shape
// vSphere writes: References from cdp.ovfFiles in their order (each file's size as the client wrote it),
// DiskSection, NetworkSection, and a VirtualHardwareSection of CIM RASD Items (CPU, memory, controllers,
// disks, NICs, CD-ROM and floppy drives), with the NVRAM referenced as ExtraConfig "nvram" when the client
// exported it. Stock vcsim 0.24.2 has no CreateDescriptor.
func (m *OvfManager) CreateDescriptor(ctx *Context, req *types.CreateDescriptor) soap.HasFault {
	body := new(methods.CreateDescriptorBody)
	vm, ok := ctx.Map.Get(req.Obj).(*VirtualMachine)
	if !ok {
		body.Fault_ = Fault(fmt.Sprintf("%s is not a virtual machine", req.Obj), &types.InvalidArgument{InvalidProperty: "obj"})
		return body
	}
	var config *types.VirtualMachineConfigInfo
	ctx.WithLock(vm, func() { config = vm.Config })
	if req.Cdp.Snapshot != nil {
		snapshot, ok := ctx.Map.Get(*req.Cdp.Snapshot).(*VirtualMachineSnapshot)
		if !ok || snapshot.Vm != vm.Self {
			body.Fault_ = Fault("", &types.InvalidArgument{InvalidProperty: "cdp.snapshot"})
			return body
		}
		config = &snapshot.Config
	}
	name := req.Cdp.Name
	if name == "" {
		name = vm.Name
	}
	body.Res = &types.CreateDescriptorResponse{Returnval: types.OvfCreateDescriptorResult{
		OvfDescriptor:     ovfEnvelope(vm.Self, name, config, req.Cdp.OvfFiles),
		IncludeImageFiles: req.Cdp.IncludeImageFiles,
	}}
	return body
}

const ovfHeader = `<?xml version="1.0" encoding="UTF-8"?>
<Envelope vmw:buildId="build-vcsim" xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:cim="http://schemas.dmtf.org/wbem/wscim/1/common" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
`

// esc makes text safe inside an XML attribute or element.
func esc(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// rasdItem is one Item of the VirtualHardwareSection; fields with empty values are left out.
type rasdItem [][2]string

func (item rasdItem) write(b *strings.Builder) {
	b.WriteString("      <Item>\n")
	for _, f := range item {
		if f[1] != "" {
			fmt.Fprintf(b, "        <rasd:%s>%s</rasd:%s>\n", f[0], esc(f[1]), f[0])
		}
	}
	b.WriteString("      </Item>\n")
}

func ovfEnvelope(vmRef types.ManagedObjectReference, name string, config *types.VirtualMachineConfigInfo, files []types.OvfFile) string {
	devices := object.VirtualDeviceList(config.Hardware.Device)
	fileIDs := map[string]string{} // device key -> ovf:id
	var b strings.Builder
	b.WriteString(ovfHeader)
	b.WriteString("  <References>\n")
	for i, f := range files {
		id := fmt.Sprintf("file%d", i+1)
		fileIDs[f.DeviceId] = id
		fmt.Fprintf(&b, "    <File ovf:href=\"%s\" ovf:id=\"%s\" ovf:size=\"%d\"/>\n", esc(f.Path), id, f.Size)
	}
	b.WriteString("  </References>\n")

	disks := disksOf(devices)
	b.WriteString("  <DiskSection>\n    <Info>Virtual disk information</Info>\n")
	for i, disk := range disks {
		fileRef := ""
		if id, ok := fileIDs[diskKey(vmRef, devices, disk)]; ok {
			fileRef = fmt.Sprintf(" ovf:fileRef=\"%s\"", id)
		}
		fmt.Fprintf(&b, "    <Disk ovf:capacity=\"%d\" ovf:capacityAllocationUnits=\"byte\" ovf:diskId=\"vmdisk%d\"%s ovf:format=\"http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized\"/>\n",
			disk.CapacityInKB*1024, i+1, fileRef)
	}
	b.WriteString("  </DiskSection>\n")

	networks := []string{}
	for _, d := range devices.SelectByType((*types.VirtualEthernetCard)(nil)) {
		if n := networkOf(d); !contains(networks, n) {
			networks = append(networks, n)
		}
	}
	b.WriteString("  <NetworkSection>\n    <Info>The list of logical networks</Info>\n")
	for _, n := range networks {
		fmt.Fprintf(&b, "    <Network ovf:name=\"%s\">\n      <Description>The %s network</Description>\n    </Network>\n", esc(n), esc(n))
	}
	b.WriteString("  </NetworkSection>\n")

	fmt.Fprintf(&b, "  <VirtualSystem ovf:id=\"%s\">\n    <Info>A virtual machine</Info>\n    <Name>%s</Name>\n", esc(name), esc(name))
	fmt.Fprintf(&b, "    <OperatingSystemSection ovf:id=\"1\" vmw:osType=\"%s\">\n      <Info>The kind of installed guest operating system</Info>\n    </OperatingSystemSection>\n", esc(config.GuestId))
	b.WriteString("    <VirtualHardwareSection>\n      <Info>Virtual hardware requirements</Info>\n      <System>\n")
	fmt.Fprintf(&b, "        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>\n        <vssd:InstanceID>0</vssd:InstanceID>\n        <vssd:VirtualSystemIdentifier>%s</vssd:VirtualSystemIdentifier>\n        <vssd:VirtualSystemType>%s</vssd:VirtualSystemType>\n      </System>\n",
		esc(name), esc(config.Version))
	cpus := fmt.Sprint(config.Hardware.NumCPU)
	rasdItem{{"AllocationUnits", "hertz * 10^6"}, {"Description", "Number of Virtual CPUs"}, {"ElementName", cpus + " virtual CPU(s)"}, {"InstanceID", "1"}, {"ResourceType", "3"}, {"VirtualQuantity", cpus}}.write(&b)
	mem := fmt.Sprint(config.Hardware.MemoryMB)
	rasdItem{{"AllocationUnits", "byte * 2^20"}, {"Description", "Memory Size"}, {"ElementName", mem + "MB of memory"}, {"InstanceID", "2"}, {"ResourceType", "4"}, {"VirtualQuantity", mem}}.write(&b)

	instance := 2
	parents := map[int32]int{} // controller device key -> its InstanceID
	next := func() string { instance++; return fmt.Sprint(instance) }
	for _, d := range devices {
		c, ok := d.(types.BaseVirtualController)
		if !ok {
			continue
		}
		kind, subType, label := controllerKind(d)
		if kind == "" {
			continue
		}
		id := next()
		parents[d.GetVirtualDevice().Key] = instance
		rasdItem{{"Address", fmt.Sprint(c.GetVirtualController().BusNumber)}, {"Description", label}, {"ElementName", fmt.Sprintf("%s %d", label, c.GetVirtualController().BusNumber)},
			{"InstanceID", id}, {"ResourceSubType", subType}, {"ResourceType", kind}}.write(&b)
	}
	unit := func(d types.BaseVirtualDevice) string {
		if u := d.GetVirtualDevice().UnitNumber; u != nil {
			return fmt.Sprint(*u)
		}
		return "0"
	}
	parent := func(d types.BaseVirtualDevice) string {
		if p, ok := parents[d.GetVirtualDevice().ControllerKey]; ok {
			return fmt.Sprint(p)
		}
		return ""
	}
	for i, disk := range disks {
		rasdItem{{"AddressOnParent", unit(disk)}, {"ElementName", fmt.Sprintf("Hard disk %d", i+1)}, {"HostResource", fmt.Sprintf("ovf:/disk/vmdisk%d", i+1)},
			{"InstanceID", next()}, {"Parent", parent(disk)}, {"ResourceType", "17"}}.write(&b)
	}
	for i, d := range devices.SelectByType((*types.VirtualEthernetCard)(nil)) {
		rasdItem{{"AddressOnParent", fmt.Sprint(7 + i)}, {"AutomaticAllocation", "true"}, {"Connection", networkOf(d)}, {"ElementName", fmt.Sprintf("Network adapter %d", i+1)},
			{"InstanceID", next()}, {"ResourceSubType", nicSubType(d)}, {"ResourceType", "10"}}.write(&b)
	}
	for i, d := range devices.SelectByType((*types.VirtualCdrom)(nil)) {
		rasdItem{{"AddressOnParent", unit(d)}, {"AutomaticAllocation", "false"}, {"ElementName", fmt.Sprintf("CD/DVD drive %d", i+1)},
			{"InstanceID", next()}, {"Parent", parent(d)}, {"ResourceSubType", "vmware.cdrom.remotepassthrough"}, {"ResourceType", "15"}}.write(&b)
	}
	for i, d := range devices.SelectByType((*types.VirtualFloppy)(nil)) {
		rasdItem{{"AddressOnParent", unit(d)}, {"AutomaticAllocation", "false"}, {"ElementName", fmt.Sprintf("Floppy drive %d", i+1)},
			{"InstanceID", next()}, {"ResourceSubType", "vmware.floppy.remotedevice"}, {"ResourceType", "14"}}.write(&b)
	}
	if config.Firmware != "" {
		fmt.Fprintf(&b, "      <vmw:Config ovf:required=\"false\" vmw:key=\"firmware\" vmw:value=\"%s\"/>\n", esc(config.Firmware))
	}
	if id, ok := fileIDs[nvramKey(vmRef)]; ok {
		fmt.Fprintf(&b, "      <vmw:ExtraConfig ovf:required=\"false\" vmw:key=\"nvram\" vmw:value=\"ovf:/file/%s\"/>\n", id)
	}
	b.WriteString("    </VirtualHardwareSection>\n  </VirtualSystem>\n</Envelope>\n")
	return b.String()
}

// controllerKind: the RASD ResourceType, ResourceSubType and label of a disk controller ("" for the others:
// PCI, PS/2, SIO, USB are not described).
func controllerKind(d types.BaseVirtualDevice) (kind, subType, label string) {
	switch d.(type) {
	case *types.VirtualLsiLogicController:
		return "6", "lsilogic", "SCSI controller"
	case *types.VirtualLsiLogicSASController:
		return "6", "lsilogicsas", "SCSI controller"
	case *types.ParaVirtualSCSIController:
		return "6", "VirtualSCSI", "SCSI controller"
	case *types.VirtualBusLogicController:
		return "6", "buslogic", "SCSI controller"
	case *types.VirtualIDEController:
		return "5", "", "IDE controller"
	case *types.VirtualAHCIController:
		return "20", "vmware.sata.ahci", "SATA controller"
	}
	return "", "", ""
}

func nicSubType(d types.BaseVirtualDevice) string {
	switch d.(type) {
	case *types.VirtualVmxnet3:
		return "VmxNet3"
	case *types.VirtualE1000e:
		return "E1000e"
	case *types.VirtualE1000:
		return "E1000"
	}
	return "E1000"
}

// networkOf: the name of the network or distributed port group a NIC is connected to.
func networkOf(d types.BaseVirtualDevice) string {
	switch b := d.GetVirtualDevice().Backing.(type) {
	case *types.VirtualEthernetCardNetworkBackingInfo:
		if b.DeviceName != "" {
			return b.DeviceName
		}
	case *types.VirtualEthernetCardDistributedVirtualPortBackingInfo:
		ref := types.ManagedObjectReference{Type: "DistributedVirtualPortgroup", Value: b.Port.PortgroupKey}
		if pg, ok := Map.Get(ref).(*DistributedVirtualPortgroup); ok {
			return pg.Name
		}
	}
	return "VM Network"
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
