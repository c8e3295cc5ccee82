package simulator

import (
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// exportLease is the HttpNfcLease of ExportVm and ExportSnapshot, as the vSphere API reference describes it:
// "initializing" while the host prepares the files (VCSIM_LEASE_INIT_MS; the manifest's digests are taken
// then), "ready" with a URL per file, kept alive by HttpNfcLeaseProgress within info.leaseTimeout seconds
// (else "error", Timedout), ended by HttpNfcLeaseComplete ("done") or HttpNfcLeaseAbort ("error").
// It is an object of the session that made it, as on vCenter; its URLs carry its id as the credential.
// vcsim's own HttpNfcLease (import only, always ready, no timeout) is a different type.
type exportLease struct {
	mo.HttpNfcLease

	entity  types.ManagedObjectReference
	scheme  string
	items   []exportItem
	digests map[string]fileDigest // by device key, taken when the lease became ready
	served  map[string]bool       // URL names whose first GET has begun (VCSIM_EXPORT_DROP_AFTER)
	timeout time.Duration
	timer   *time.Timer
	alive   time.Time // the last HttpNfcLeaseProgress (or when it became ready)
}

type fileDigest struct {
	size         int64
	sha1, sha256 string
}

const exportPrefix = "/nfc/export/"

// exportLeases by id, for the NFC URLs (which carry no session).
var exportLeases sync.Map

func newExportLease(ctx *Context, entity types.ManagedObjectReference, items []exportItem) *exportLease {
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	l := &exportLease{entity: entity, scheme: "http", items: items, served: map[string]bool{}}
	if ctx.req != nil && ctx.req.TLS != nil {
		l.scheme = "https"
	}
	l.Self = types.ManagedObjectReference{Type: "HttpNfcLease", Value: hex.EncodeToString(id)}
	l.State = types.HttpNfcLeaseStateInitializing
	l.Mode = string(types.HttpNfcLeaseModePushOrGet)
	ctx.Session.Put(l)
	exportLeases.Store(l.Self.Value, l)
	go l.prepare(envMillis("VCSIM_LEASE_INIT_MS"), time.Duration(leaseTimeoutSeconds())*time.Second)
	return l
}

// prepare takes the files' digests and sizes after the initializing delay, then makes the lease ready.
func (l *exportLease) prepare(initializing, timeout time.Duration) {
	time.Sleep(initializing)
	digests := map[string]fileDigest{}
	var fault types.BaseMethodFault
	for _, item := range l.items {
		d, err := digestOf(item.file)
		if err != nil {
			fault = &types.FileNotFound{FileFault: types.FileFault{File: item.file}}
			break
		}
		digests[item.key] = d
	}
	Map.WithLock(l.Self, func() {
		if l.State != types.HttpNfcLeaseStateInitializing {
			return // aborted meanwhile
		}
		if fault != nil {
			l.end(types.HttpNfcLeaseStateError, fault)
			return
		}
		l.digests = digests
		l.timeout = timeout
		l.set(types.PropertyChange{Name: "info", Val: l.info(timeout)}, types.PropertyChange{Name: "initializeProgress", Val: int32(100)},
			types.PropertyChange{Name: "state", Val: types.HttpNfcLeaseStateReady})
		l.alive = time.Now()
		l.timer = time.AfterFunc(timeout, l.expire)
	})
}

func (l *exportLease) info(timeout time.Duration) *types.HttpNfcLeaseInfo {
	info := &types.HttpNfcLeaseInfo{Lease: l.Self, Entity: l.entity, LeaseTimeout: int32(timeout / time.Second)}
	for _, item := range l.items {
		info.TotalDiskCapacityInKB += item.capacity / 1024
		info.DeviceUrl = append(info.DeviceUrl, types.HttpNfcLeaseDeviceUrl{
			Key:      item.key,
			Url:      fmt.Sprintf("%s://*%s%s/%s", l.scheme, exportPrefix, l.Self.Value, item.name),
			Disk:     types.NewBool(item.disk),
			TargetId: item.name,
			FileSize: l.digests[item.key].size,
		})
	}
	return info
}

func digestOf(file string) (fileDigest, error) {
	f, err := os.Open(file)
	if err != nil {
		return fileDigest{}, err
	}
	defer f.Close()
	h1, h256 := sha1.New(), sha256.New()
	n, err := io.Copy(io.MultiWriter(h1, h256), f)
	return fileDigest{size: n, sha1: hex.EncodeToString(h1.Sum(nil)), sha256: hex.EncodeToString(h256.Sum(nil))}, err
}

// expire: no HttpNfcLeaseProgress within the lease timeout (one that came while the timer fired re-arms it).
func (l *exportLease) expire() {
	Map.WithLock(l.Self, func() {
		if l.State != types.HttpNfcLeaseStateReady {
			return
		}
		if left := l.timeout - time.Since(l.alive); left > 0 {
			l.timer.Reset(left)
			return
		}
		l.end(types.HttpNfcLeaseStateError, &types.Timedout{})
	})
}

// end: the lease's URLs answer 404 from now on, and downloads under way stop. Called with the lease locked.
func (l *exportLease) end(state types.HttpNfcLeaseState, fault types.BaseMethodFault) {
	if l.timer != nil {
		l.timer.Stop()
	}
	changes := []types.PropertyChange{{Name: "state", Val: state}}
	if fault != nil {
		changes = append(changes, types.PropertyChange{Name: "error", Val: &types.LocalizedMethodFault{Fault: fault, LocalizedMessage: fmt.Sprintf("%T", fault)}})
	}
	l.set(changes...)
	exportLeases.Delete(l.Self.Value)
}

// set changes properties through vcsim's registry, so that WaitForUpdatesEx (govc's way to wait for a lease)
// sees them as it sees any object's. Called with the lease locked.
func (l *exportLease) set(changes ...types.PropertyChange) {
	Map.Update(l, changes)
}

// ready says whether the lease still serves its files (for the downloads under way).
func (l *exportLease) ready() bool {
	ready := false
	Map.WithLock(l.Self, func() { ready = l.State == types.HttpNfcLeaseStateReady })
	return ready
}

// open finds a file of a ready lease by its URL name; first is true for the first GET of that file.
func (l *exportLease) open(name string, get bool) (item exportItem, first bool, ok bool) {
	Map.WithLock(l.Self, func() {
		if l.State != types.HttpNfcLeaseStateReady {
			return
		}
		for _, it := range l.items {
			if it.name == name {
				item, ok = it, true
				first = get && !l.served[name]
				if get {
					l.served[name] = true
				}
			}
		}
	})
	return item, first, ok
}

func invalidLeaseState(l *exportLease) *soap.Fault {
	return Fault(fmt.Sprintf("the lease is %s", l.State), &types.InvalidState{})
}

// The methods below are called by vcsim's dispatcher, with the lease locked.

func (l *exportLease) HttpNfcLeaseProgress(ctx *Context, req *types.HttpNfcLeaseProgress) soap.HasFault {
	body := new(methods.HttpNfcLeaseProgressBody)
	if l.State != types.HttpNfcLeaseStateReady {
		body.Fault_ = invalidLeaseState(l)
		return body
	}
	l.set(types.PropertyChange{Name: "transferProgress", Val: req.Percent})
	l.alive = time.Now()
	l.timer.Reset(l.timeout)
	body.Res = new(types.HttpNfcLeaseProgressResponse)
	return body
}

func (l *exportLease) HttpNfcLeaseComplete(ctx *Context, req *types.HttpNfcLeaseComplete) soap.HasFault {
	body := new(methods.HttpNfcLeaseCompleteBody)
	if l.State != types.HttpNfcLeaseStateReady {
		body.Fault_ = invalidLeaseState(l)
		return body
	}
	l.set(types.PropertyChange{Name: "transferProgress", Val: int32(100)})
	l.end(types.HttpNfcLeaseStateDone, nil)
	body.Res = new(types.HttpNfcLeaseCompleteResponse)
	return body
}

func (l *exportLease) HttpNfcLeaseAbort(ctx *Context, req *types.HttpNfcLeaseAbort) soap.HasFault {
	body := new(methods.HttpNfcLeaseAbortBody)
	if l.State == types.HttpNfcLeaseStateDone || l.State == types.HttpNfcLeaseStateError {
		body.Fault_ = invalidLeaseState(l)
		return body
	}
	var fault types.BaseMethodFault = &types.RequestCanceled{}
	if req.Fault != nil && req.Fault.Fault != nil {
		fault = req.Fault.Fault
	}
	l.end(types.HttpNfcLeaseStateError, fault)
	body.Res = new(types.HttpNfcLeaseAbortResponse)
	return body
}

// HttpNfcLeaseGetManifest: size, SHA-1 (and SHA-256 as checksum) of each file, as they were when the lease
// became ready.
func (l *exportLease) HttpNfcLeaseGetManifest(ctx *Context, req *types.HttpNfcLeaseGetManifest) soap.HasFault {
	body := new(methods.HttpNfcLeaseGetManifestBody)
	if l.State != types.HttpNfcLeaseStateReady {
		body.Fault_ = invalidLeaseState(l)
		return body
	}
	res := new(types.HttpNfcLeaseGetManifestResponse)
	for _, item := range l.items {
		d := l.digests[item.key]
		entry := types.HttpNfcLeaseManifestEntry{Key: item.key, Sha1: d.sha1, Checksum: d.sha256, ChecksumType: "sha256", Size: d.size, Disk: item.disk}
		if item.disk {
			entry.Capacity, entry.PopulatedSize = item.capacity, d.size
		}
		res.Returnval = append(res.Returnval, entry)
	}
	body.Res = res
	return body
}
