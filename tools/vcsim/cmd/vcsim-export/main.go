// vcsim-export: govmomi's vCenter simulator (vcsim) with what hypervisord's tests need from a vCenter and
// stock vcsim 0.24.2 lacks: VM export (ExportVm, export leases, CreateDescriptor), snapshots that keep their
// disk content and ExportSnapshot, and the session check on datastore files. Those live in ../../simulator,
// compiled into vcsim's package by ../../build.sh.
//
// Once it listens it prints one JSON line on stdout (test/support/vcsim.ts reads it):
//
//	{"url":"https://127.0.0.1:PORT/sdk","pid":N,"started":"...","vms":[{"name","path","moref","uuid",
//	 "powerState","firmware","nvram"?,"disks":[{"label","capacityKB","file"}]}]}
//
// "file" is the local file behind the disk: what is written there is what an export serves. SIGTERM or
// SIGINT stops it and removes its datastore directories.
package main

import (
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

type diskInfo struct {
	Label      string `json:"label"`
	CapacityKB int64  `json:"capacityKB"`
	File       string `json:"file"`
}

type vmInfo struct {
	Name       string     `json:"name"`
	Path       string     `json:"path"`
	Moref      string     `json:"moref"`
	UUID       string     `json:"uuid"`
	PowerState string     `json:"powerState"`
	Firmware   string     `json:"firmware"`
	Nvram      string     `json:"nvram,omitempty"`
	Disks      []diskInfo `json:"disks"`
}

func main() {
	model := simulator.VPX()
	listen := flag.String("l", "127.0.0.1:0", "listen address (port 0: a free port)")
	flag.IntVar(&model.Datacenter, "dc", model.Datacenter, "datacenters")
	flag.IntVar(&model.Cluster, "cluster", model.Cluster, "clusters per datacenter")
	flag.IntVar(&model.ClusterHost, "host", model.ClusterHost, "hosts per cluster")
	flag.IntVar(&model.Host, "standalone-host", model.Host, "standalone hosts per datacenter")
	flag.IntVar(&model.Pool, "pool", model.Pool, "resource pools per cluster")
	flag.IntVar(&model.Datastore, "ds", model.Datastore, "datastores")
	flag.IntVar(&model.Machine, "vm", model.Machine, "VMs per resource pool and per standalone host")
	flag.IntVar(&model.Folder, "folder", model.Folder, "folders per datacenter")
	flag.BoolVar(&model.Autostart, "autostart", true, "power the VMs on")
	username := flag.String("username", "", "the only user name Login accepts (empty: any)")
	password := flag.String("password", "", "the only password Login accepts, with -username")
	idle := flag.Duration("session-idle-timeout", 0, "sessions idle this long expire (0: never)")
	efi := flag.String("efi", "", "VM names (comma-separated) given EFI firmware")
	diskKB := flag.Int64("disk-kb", 0, "capacity of every VM disk in KB (0: vcsim's)")
	flag.Parse()

	simulator.SessionIdleTimeout = *idle
	if err := model.Create(); err != nil {
		log.Fatal(err)
	}
	vms := virtualMachines()
	for _, vm := range vms {
		if contains(strings.Split(*efi, ","), vm.Name) {
			vm.Config.Firmware = string(types.GuestOsDescriptorFirmwareTypeEfi)
		}
		if *diskKB > 0 {
			resizeDisks(vm, *diskKB)
		}
	}

	u := &url.URL{Host: *listen}
	if *username != "" {
		u.User = url.UserPassword(*username, *password)
	}
	model.Service.Listen = u
	model.Service.TLS = new(tls.Config)
	model.Service.RegisterEndpoints = true
	server := model.Service.NewServer()
	// Before the URL is printed, so before any request can arrive.
	server.Config.Handler = simulator.ExportHandler(model.Service, server.Config.Handler, u.User)

	address := *server.URL
	address.User = nil
	inventory := []vmInfo{}
	for _, vm := range vms {
		inventory = append(inventory, describe(vm))
	}
	line, err := json.Marshal(map[string]interface{}{"url": address.String(), "pid": os.Getpid(), "started": time.Now().UTC(), "vms": inventory})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(line))

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
	server.Close()
	model.Remove()
}

// virtualMachines in the order vcsim made them (by moref number), so that the inventory line is stable.
func virtualMachines() []*simulator.VirtualMachine {
	var vms []*simulator.VirtualMachine
	for _, e := range simulator.Map.All("VirtualMachine") {
		vms = append(vms, e.(*simulator.VirtualMachine))
	}
	number := func(vm *simulator.VirtualMachine) int {
		n, _ := strconv.Atoi(strings.TrimPrefix(vm.Self.Value, "vm-"))
		return n
	}
	sort.Slice(vms, func(i, j int) bool { return number(vms[i]) < number(vms[j]) })
	return vms
}

func resizeDisks(vm *simulator.VirtualMachine, kb int64) {
	for _, d := range object.VirtualDeviceList(vm.Config.Hardware.Device).SelectByType((*types.VirtualDisk)(nil)) {
		disk := d.(*types.VirtualDisk)
		disk.CapacityInKB, disk.CapacityInBytes = kb, kb*1024
	}
}

func describe(vm *simulator.VirtualMachine) vmInfo {
	info := vmInfo{
		Name:       vm.Name,
		Path:       inventoryPath(vm),
		Moref:      vm.Self.Value,
		UUID:       vm.Config.Uuid,
		PowerState: string(vm.Runtime.PowerState),
		Firmware:   vm.Config.Firmware,
		Disks:      []diskInfo{},
	}
	if info.Firmware == string(types.GuestOsDescriptorFirmwareTypeEfi) {
		info.Nvram = simulator.NvramFile(vm)
	}
	devices := object.VirtualDeviceList(vm.Config.Hardware.Device)
	for _, d := range devices.SelectByType((*types.VirtualDisk)(nil)) {
		disk := d.(*types.VirtualDisk)
		file, _ := simulator.DiskFile(vm, disk)
		info.Disks = append(info.Disks, diskInfo{Label: devices.Name(disk), CapacityKB: disk.CapacityInKB, File: file})
	}
	return info
}

// inventoryPath: "/DC0/vm/DC0_H0_VM0", the names from the root folder down (the root itself has none).
func inventoryPath(e mo.Entity) string {
	var names []string
	for entity := e.Entity(); entity.Parent != nil; {
		names = append([]string{entity.Name}, names...)
		next, found := simulator.Map.Get(*entity.Parent).(mo.Entity)
		if !found {
			break
		}
		entity = next.Entity()
	}
	return "/" + strings.Join(names, "/")
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s && s != "" {
			return true
		}
	}
	return false
}
