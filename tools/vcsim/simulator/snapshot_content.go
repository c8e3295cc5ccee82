package simulator

import (
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// Snapshots with content. Stock vcsim 0.24.2 records a snapshot's metadata and an empty .vmsn only, so a
// snapshot exported later would serve the live disks. Here CreateSnapshot_Task copies each disk file (and the
// NVRAM) to "<disk>-snap-<n>.vmdk" ("<vm>-snap-<n>.nvram") beside it, n from the snapshot's moref: the
// content as it was when the snapshot was taken, what ExportSnapshot serves and RevertToSnapshot_Task puts
// back. The snapshot's config.hardware.device names the frozen files, as a real snapshot's config names the
// disk it froze. The faults of CreateSnapshot_Task and RemoveSnapshot_Task that clients must handle are
// switched on by VCSIM_SNAPSHOT_CREATE_MS, VCSIM_SNAPSHOT_QUIESCE_FAIL and VCSIM_SNAPSHOT_REMOVE_FAIL.

// frozenSnapshot is what this overlay made for one snapshot.
type frozenSnapshot struct {
	vm    types.ManagedObjectReference
	disks map[int32]string // device key of the disk -> frozen file
	nvram string           // frozen NVRAM, "" when the VM had none
	vmsn  string           // vcsim's .vmsn of the snapshot, removed with it
}

func (f *frozenSnapshot) files() []string {
	files := []string{f.nvram, f.vmsn}
	for _, file := range f.disks {
		files = append(files, file)
	}
	return files
}

var frozen = struct {
	sync.Mutex
	by map[types.ManagedObjectReference]*frozenSnapshot
}{by: map[types.ManagedObjectReference]*frozenSnapshot{}}

func init() {
	sdkHooks["CreateSnapshot_Task"] = createSnapshotHook
	sdkHooks["RemoveSnapshot_Task"] = removeSnapshotHook
	sdkHooks["RemoveAllSnapshots_Task"] = removeAllSnapshotsHook
	sdkHooks["RevertToSnapshot_Task"] = revertToSnapshotHook
}

// createSnapshotHook runs vcsim's CreateSnapshot_Task in a task of its own that lasts VCSIM_SNAPSHOT_CREATE_MS
// (the call returns the running task at once, as on vCenter), fails to quiesce a running VM when
// VCSIM_SNAPSHOT_QUIESCE_FAIL says so (nothing is made), and freezes the disks once the snapshot exists.
func createSnapshotHook(ctx *Context, method *Method, next func() soap.HasFault) soap.HasFault {
	vm, ok := ctx.Map.Get(method.This).(*VirtualMachine)
	req, isReq := method.Body.(*types.CreateSnapshot_Task)
	if ctx.Session == nil || !ok || !isReq {
		return next()
	}
	fault := quiesceFault(vm, req)
	delay := envMillis("VCSIM_SNAPSHOT_CREATE_MS")
	task := CreateTask(vm, "createSnapshot", func(*Task) (types.AnyType, types.BaseMethodFault) {
		time.Sleep(delay)
		if fault != nil {
			return nil, fault
		}
		res := next()
		if res.Fault() != nil {
			return nil, res.Fault().VimFault().(types.BaseMethodFault)
		}
		inner := ctx.Map.Get(res.(*methods.CreateSnapshot_TaskBody).Res.Returnval).(*Task)
		if inner.Info.Error != nil {
			return nil, inner.Info.Error.Fault
		}
		snapshot := inner.Info.Result.(types.ManagedObjectReference)
		var failed types.BaseMethodFault
		ctx.Map.WithLock(vm, func() { failed = freeze(vm, snapshot) })
		return snapshot, failed
	})
	if delay > 0 {
		go task.Run()
	} else {
		task.Run()
	}
	return &methods.CreateSnapshot_TaskBody{Res: &types.CreateSnapshot_TaskResponse{Returnval: task.Self}}
}

// quiesceFault: the fault a host answers when it cannot quiesce a running guest, per VCSIM_SNAPSHOT_QUIESCE_FAIL
// ("1": the freeze exceeded its time limit; "app": a pre-freeze script failed); nil otherwise.
func quiesceFault(vm *VirtualMachine, req *types.CreateSnapshot_Task) types.BaseMethodFault {
	if !req.Quiesce || vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
		return nil
	}
	switch os.Getenv("VCSIM_SNAPSHOT_QUIESCE_FAIL") {
	case "1":
		return &types.FilesystemQuiesceFault{}
	case "app":
		return &types.ApplicationQuiesceFault{}
	}
	return nil
}

// freeze copies the VM's disks and NVRAM for a snapshot vcsim just made, and points the snapshot's config at
// the copies. Called with the VM locked.
func freeze(vm *VirtualMachine, ref types.ManagedObjectReference) types.BaseMethodFault {
	snapshot, ok := Map.Get(ref).(*VirtualMachineSnapshot)
	if !ok {
		return &types.ManagedObjectNotFound{Obj: ref}
	}
	n := strings.TrimPrefix(ref.Value, "snapshot-")
	record := &frozenSnapshot{vm: vm.Self, disks: map[int32]string{}, vmsn: vmsnFile(vm, ref)}
	// vcsim's snapshot config is a shallow copy of the VM's: its devices are replaced, not edited.
	devices := make([]types.BaseVirtualDevice, len(snapshot.Config.Hardware.Device))
	copy(devices, snapshot.Config.Hardware.Device)
	for i, device := range devices {
		disk, isDisk := device.(*types.VirtualDisk)
		if !isDisk {
			continue
		}
		live, ok := localFile(vm, diskFileName(disk))
		if !ok {
			continue
		}
		ext := path.Ext(live)
		file := strings.TrimSuffix(live, ext) + "-snap-" + n + ext
		if err := copyFile(live, file); err != nil {
			return &types.FileFault{File: file}
		}
		record.disks[disk.Key] = file
		frozenDisk := *disk
		if backing, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo); ok {
			b := *backing
			b.FileName = strings.TrimSuffix(b.FileName, ext) + "-snap-" + n + ext
			frozenDisk.Backing = &b
		}
		devices[i] = &frozenDisk
	}
	snapshot.Config.Hardware.Device = devices
	if nvram := nvramFile(vm); nvram != "" {
		if _, err := os.Stat(nvram); err == nil {
			record.nvram = path.Join(path.Dir(nvram), vm.Name+"-snap-"+n+".nvram")
			if err := copyFile(nvram, record.nvram); err != nil {
				return &types.FileFault{File: record.nvram}
			}
		}
	}
	frozen.Lock()
	frozen.by[ref] = record
	frozen.Unlock()
	return nil
}

// vmsnFile: the .vmsn vcsim made for the snapshot, found while its layoutEx entry is fresh.
func vmsnFile(vm *VirtualMachine, ref types.ManagedObjectReference) string {
	for _, s := range vm.LayoutEx.Snapshot {
		if s.Key != ref {
			continue
		}
		for _, f := range vm.LayoutEx.File {
			if f.Key == s.DataKey {
				if file, ok := localFile(vm, f.Name); ok {
					return file
				}
			}
		}
	}
	return ""
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		_ = dst.Close()
		return err
	}
	return dst.Close()
}

// forget drops the records of removed snapshots and deletes their files. vcsim's own removal deletes files by
// layoutEx keys that go stale after an earlier removal (three snapshots, remove the first, then the second:
// the live disk went), so its keys for these snapshots are cleared first (keep), and the files go here.
type removal struct {
	vm      *VirtualMachine
	records map[types.ManagedObjectReference]*frozenSnapshot
}

func prepareRemoval(vm *VirtualMachine, refs []types.ManagedObjectReference) *removal {
	r := &removal{vm: vm, records: map[types.ManagedObjectReference]*frozenSnapshot{}}
	frozen.Lock()
	for _, ref := range refs {
		if record := frozen.by[ref]; record != nil {
			r.records[ref] = record
		}
	}
	frozen.Unlock()
	Map.WithLock(vm, func() {
		for i := range vm.LayoutEx.Snapshot {
			if _, ok := r.records[vm.LayoutEx.Snapshot[i].Key]; ok {
				vm.LayoutEx.Snapshot[i].DataKey, vm.LayoutEx.Snapshot[i].MemoryKey = -1, -1
			}
		}
	})
	return r
}

func (r *removal) done() {
	frozen.Lock()
	defer frozen.Unlock()
	for ref, record := range r.records {
		if Map.Get(ref) != nil {
			continue // still in the inventory: not removed after all
		}
		for _, file := range record.files() {
			if file != "" {
				_ = os.Remove(file)
			}
		}
		delete(frozen.by, ref)
	}
}

// subtree: the snapshot and, when asked, every snapshot under it.
func subtree(vm *VirtualMachine, ref types.ManagedObjectReference, children bool) []types.ManagedObjectReference {
	refs := []types.ManagedObjectReference{ref}
	if children && vm.Snapshot != nil {
		if tree := findSnapshotInTree(vm.Snapshot.RootSnapshotList, ref); tree != nil {
			refs = append(refs, allSnapshotsInTree(tree.ChildSnapshotList)...)
		}
	}
	return refs
}

// taskResult: the state vcsim's task ended in, from a *_Task method's answer.
func taskFailed(res soap.HasFault, ref func() types.ManagedObjectReference) bool {
	if res.Fault() != nil {
		return true
	}
	task, ok := Map.Get(ref()).(*Task)
	return !ok || task.Info.State == types.TaskInfoStateError
}

// removeSnapshotHook: the first VCSIM_SNAPSHOT_REMOVE_FAIL calls end in FileLocked and keep the snapshot (a
// host does so while a backup still holds the disk); the others remove it, and its files with it.
func removeSnapshotHook(ctx *Context, method *Method, next func() soap.HasFault) soap.HasFault {
	snapshot, ok := ctx.Map.Get(method.This).(*VirtualMachineSnapshot)
	req, isReq := method.Body.(*types.RemoveSnapshot_Task)
	if ctx.Session == nil || !ok || !isReq {
		return next()
	}
	vm, ok := ctx.Map.Get(snapshot.Vm).(*VirtualMachine)
	if !ok {
		return next()
	}
	if nextRemoveFails() {
		file := ""
		frozen.Lock()
		if record := frozen.by[method.This]; record != nil {
			file = record.vmsn
		}
		frozen.Unlock()
		task := CreateTask(snapshot, "removeSnapshot", func(*Task) (types.AnyType, types.BaseMethodFault) {
			return nil, &types.FileLocked{FileFault: types.FileFault{File: file}}
		})
		return &methods.RemoveSnapshot_TaskBody{Res: &types.RemoveSnapshot_TaskResponse{Returnval: task.Run()}}
	}
	var refs []types.ManagedObjectReference
	ctx.Map.WithLock(vm, func() { refs = subtree(vm, method.This, req.RemoveChildren) })
	removal := prepareRemoval(vm, refs)
	res := next()
	if !taskFailed(res, func() types.ManagedObjectReference { return res.(*methods.RemoveSnapshot_TaskBody).Res.Returnval }) {
		// vcsim removes the children from the tree but leaves their objects: they go too.
		for _, ref := range refs[1:] {
			ctx.Map.Remove(ref)
		}
		removal.done()
	}
	return res
}

func removeAllSnapshotsHook(ctx *Context, method *Method, next func() soap.HasFault) soap.HasFault {
	vm, ok := ctx.Map.Get(method.This).(*VirtualMachine)
	if ctx.Session == nil || !ok {
		return next()
	}
	var refs []types.ManagedObjectReference
	ctx.Map.WithLock(vm, func() {
		if vm.Snapshot != nil {
			refs = allSnapshotsInTree(vm.Snapshot.RootSnapshotList)
		}
	})
	removal := prepareRemoval(vm, refs)
	res := next()
	if !taskFailed(res, func() types.ManagedObjectReference { return res.(*methods.RemoveAllSnapshots_TaskBody).Res.Returnval }) {
		removal.done()
	}
	return res
}

// revertToSnapshotHook: after vcsim's revert (metadata), the frozen content is copied back over the live disks.
func revertToSnapshotHook(ctx *Context, method *Method, next func() soap.HasFault) soap.HasFault {
	res := next()
	if ctx.Session == nil || taskFailed(res, func() types.ManagedObjectReference { return res.(*methods.RevertToSnapshot_TaskBody).Res.Returnval }) {
		return res
	}
	frozen.Lock()
	record := frozen.by[method.This]
	frozen.Unlock()
	vm, ok := ctx.Map.Get(record.vmRef()).(*VirtualMachine)
	if record == nil || !ok {
		return res
	}
	ctx.Map.WithLock(vm, func() {
		for _, disk := range disksOf(object.VirtualDeviceList(vm.Config.Hardware.Device)) {
			if live, ok := localFile(vm, diskFileName(disk)); ok && record.disks[disk.Key] != "" {
				_ = copyFile(record.disks[disk.Key], live)
			}
		}
		if record.nvram != "" {
			_ = copyFile(record.nvram, nvramFile(vm))
		}
	})
	return res
}

func (f *frozenSnapshot) vmRef() types.ManagedObjectReference {
	if f == nil {
		return types.ManagedObjectReference{}
	}
	return f.vm
}

// ExportSnapshot: an export lease like ExportVm's, serving the snapshot's frozen files whatever the VM's power
// state (how a running VM is exported). Its device keys are the VM's.
func (v *VirtualMachineSnapshot) ExportSnapshot(ctx *Context, req *types.ExportSnapshot) soap.HasFault {
	body := new(methods.ExportSnapshotBody)
	frozen.Lock()
	record := frozen.by[v.Self]
	frozen.Unlock()
	if record == nil {
		body.Fault_ = Fault(fmt.Sprintf("%s has no content to export", v.Self.Value), &types.InvalidState{})
		return body
	}
	devices := object.VirtualDeviceList(v.Config.Hardware.Device)
	var items []exportItem
	for i, disk := range disksOf(devices) {
		if file := record.disks[disk.Key]; file != "" {
			items = append(items, exportItem{key: diskKey(v.Vm, devices, disk), name: fmt.Sprintf("disk-%d.vmdk", i), file: file, disk: true, capacity: disk.CapacityInKB * 1024})
		}
	}
	if record.nvram != "" {
		items = append(items, exportItem{key: nvramKey(v.Vm), name: path.Base(record.nvram), file: record.nvram})
	}
	body.Res = &types.ExportSnapshotResponse{Returnval: newExportLease(ctx, v.Vm, items).Self}
	return body
}
