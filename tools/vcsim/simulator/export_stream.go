package simulator

import (
	"errors"
	"net/http"
	"os"
	"strings"
	"time"
)

// serveExport answers GET and HEAD on /nfc/export/<lease>/<name> while the lease is ready: the file's bytes
// as they are now, with Content-Length and Range (206) as a host's NFC server does; 404 for an unknown or
// ended lease. VCSIM_EXPORT_RATE slows each download; VCSIM_EXPORT_DROP_AFTER cuts the first GET of each file.
func serveExport(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, exportPrefix), "/")
	found, ok := exportLeases.Load(parts[0])
	if len(parts) != 2 || !ok {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	lease := found.(*exportLease)
	item, first, ok := lease.open(parts[1], r.Method == http.MethodGet)
	if !ok {
		http.NotFound(w, r)
		return
	}
	f, err := os.Open(item.file)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	stream := &exportStream{File: f, lease: lease, rate: exportRate(), cutAfter: -1}
	if first {
		stream.cutAfter = exportDropAfter()
	}
	// Set, so that ServeContent does not read the start of the file to guess it.
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", time.Time{}, stream)
	if stream.stopped {
		// What was written goes out, then the connection is closed without finishing the response.
		if flusher, ok := w.(http.Flusher); ok {
			flusher.Flush()
		}
		panic(http.ErrAbortHandler)
	}
}

// errStopped ends ServeContent's copy when the lease ended or the cut is due (a multi-range response reads the
// file in a goroutine of its own: only the handler may abort the connection).
var errStopped = errors.New("the download is stopped")

// exportStream is the file as ServeContent reads it: in chunks, at the rate asked for, stopping when the lease
// ends or the cut is due (serveExport then closes the connection mid-body).
type exportStream struct {
	*os.File
	lease    *exportLease
	rate     int64 // bytes per second, 0: unlimited
	cutAfter int64 // bytes, -1: never
	sent     int64
	began    time.Time
	stopped  bool
}

func (s *exportStream) Read(p []byte) (int, error) {
	if s.stopped || !s.lease.ready() || (s.cutAfter >= 0 && s.sent >= s.cutAfter) {
		s.stopped = true
		return 0, errStopped
	}
	if s.began.IsZero() {
		s.began = time.Now()
	}
	chunk := int64(64 * 1024)
	if s.rate > 0 && s.rate/20 < chunk {
		chunk = s.rate / 20 // about 20 writes a second: a steady rate, and a lease end seen quickly
		if chunk < 1024 {
			chunk = 1024
		}
	}
	if s.cutAfter >= 0 && s.cutAfter-s.sent < chunk {
		chunk = s.cutAfter - s.sent
	}
	if int64(len(p)) > chunk {
		p = p[:chunk]
	}
	if s.rate > 0 {
		due := s.began.Add(time.Duration(float64(s.sent) / float64(s.rate) * float64(time.Second)))
		time.Sleep(time.Until(due))
	}
	n, err := s.File.Read(p)
	s.sent += int64(n)
	return n, err
}
