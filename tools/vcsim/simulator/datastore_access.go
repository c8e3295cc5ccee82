package simulator

import (
	"net/http"
	"net/url"
	"path"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/soap"
)

// datastoreAccessAllowed: vCenter serves /folder only within a session (its vmware_soap_session cookie) or
// with HTTP Basic credentials that Login accepts; stock vcsim checks nothing there.
func datastoreAccessAllowed(svc *Service, r *http.Request, login *url.Userinfo) bool {
	if cookie, err := r.Cookie(soap.SessionCookieName); err == nil {
		if _, ok := svc.sm.getSession(cookie.Value); ok {
			return true
		}
	}
	user, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	if login == nil || login == DefaultLogin {
		return user != "" && pass != ""
	}
	want, _ := login.Password()
	return user == login.Username() && pass == want
}

// localFile is the file on this machine behind a datastore path ("[LocalDS_0] DC0_H0_VM0/disk1.vmdk") of the VM.
func localFile(vm *VirtualMachine, dsPath string) (string, bool) {
	var p object.DatastorePath
	if !p.FromString(dsPath) {
		return "", false
	}
	ds, ok := Map.FindByName(p.Datastore, vm.Datastore).(*Datastore)
	if !ok {
		return "", false
	}
	return path.Join(ds.Info.GetDatastoreInfo().Url, p.Path), true
}
