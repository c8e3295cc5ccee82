// This file joins govmomi's package simulator at build time (build.sh: go build -overlay), like every file
// in this directory: methods on vcsim's own types must live in its package.

package simulator

import (
	"bytes"
	"context"
	"io/ioutil"
	"log"
	"net/http"
	"net/url"
	"strings"

	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/xml" // vcsim's envelope types marshal with govmomi's fork of encoding/xml
)

// sdkHook wraps one vim25 method that vcsim already implements: it may answer by itself, or call next (vcsim's
// own implementation, with its session check and locking) and act before and after it. vcsim dispatches by
// method name through reflection, so a method it has cannot be redefined in its package: it is wrapped here.
type sdkHook func(ctx *Context, method *Method, next func() soap.HasFault) soap.HasFault

// sdkHooks by vim25 method name; filled by the init functions of the files that need one.
var sdkHooks = map[string]sdkHook{}

// ExportHandler is the simulator's HTTP handler with what this overlay adds: the export lease URLs
// (/nfc/export/), vCenter's session check on datastore files (/folder/), and the wrapped vim25 methods.
// login is the one accepted user (nil: any user name with a non-empty password, as vcsim's Login).
func ExportHandler(svc *Service, next http.Handler, login *url.Userinfo) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, exportPrefix):
			serveExport(w, r)
		case strings.HasPrefix(r.URL.Path, folderPrefix):
			if !datastoreAccessAllowed(svc, r, login) {
				w.Header().Set("WWW-Authenticate", `Basic realm="VMware HTTP server"`)
				http.Error(w, "a vCenter session (vmware_soap_session cookie) or Basic credentials are required", http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		case r.Method == http.MethodPost && (r.URL.Path == Map.Path || r.URL.Path == Map.Path+"/vimService"):
			serveHookedSDK(svc, next, w, r)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// serveHookedSDK answers a SOAP call whose method has a hook; any other call goes to vcsim unchanged.
func serveHookedSDK(svc *Service, next http.Handler, w http.ResponseWriter, r *http.Request) {
	body, err := ioutil.ReadAll(r.Body)
	_ = r.Body.Close()
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.Body = ioutil.NopCloser(bytes.NewReader(body))
	method, err := UnmarshalBody(Map.typeFunc, body)
	if err != nil || sdkHooks[method.Name] == nil {
		next.ServeHTTP(w, r)
		return
	}
	ctx := &Context{req: r, res: w, svc: svc, Map: Map, Context: context.Background()}
	ctx.Map.WithLock(svc.sm, ctx.mapSession)
	ctx.Header = method.Header
	res := sdkHooks[method.Name](ctx, method, func() soap.HasFault { return svc.call(ctx, method) })
	writeSOAP(w, method.Name, res)
}

// writeSOAP encodes a method's answer (or fault) as vcsim's ServeSDK does, with its envelope types and encoder.
func writeSOAP(w http.ResponseWriter, name string, res soap.HasFault) {
	status := http.StatusOK
	var body interface{} = &response{Map.Namespace, res}
	if f := res.Fault(); f != nil {
		status = http.StatusInternalServerError
		fault := &soapFault{Code: f.Code, String: f.String}
		fault.Detail.Fault = &faultDetail{f.Detail.Fault}
		body = struct{ Fault *soapFault }{fault}
	}
	var out bytes.Buffer
	out.WriteString(xml.Header)
	err := xml.NewEncoder(&out).Encode(&soapEnvelope{
		Enc:  "http://schemas.xmlsoap.org/soap/encoding/",
		Env:  "http://schemas.xmlsoap.org/soap/envelope/",
		XSD:  "http://www.w3.org/2001/XMLSchema",
		XSI:  "http://www.w3.org/2001/XMLSchema-instance",
		Body: body,
	})
	if err != nil {
		log.Printf("error encoding %s response: %s", name, err)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(out.Bytes())
}
