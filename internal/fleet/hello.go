package fleet

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strings"
	"unicode"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/pki"
)

// maxHello bounds the body of POST /v1/hello.
const maxHello = 16 << 10

// Handler serves POST /v1/hello on the server's fleet port, behind
// pki's RequireNode for agents (401 without a verified client certificate,
// 403 for a removed node or another role). The host is named by its
// certificate, never by the body. A new host joins the registry as
// joining; a known one has its record updated (URL, zone, capacity, epoch,
// version; its generation and drain are kept) and, when its agent
// restarted or moved, is listed again. The record is stored before the
// answer: 204, or 400 for a body that is not a valid api.AgentHello, or
// 500 when it cannot be stored.
func (f *Fleet) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /v1/hello", f.o.PKI.RequireNode(api.RoleAgent)(http.HandlerFunc(f.hello)))
	return mux
}

func (f *Fleet) hello(w http.ResponseWriter, r *http.Request) {
	id, ok := pki.NodeFrom(r.Context())
	if !ok {
		writeError(w, http.StatusUnauthorized, "a client certificate of the fleet is required")
		return
	}
	var hi api.AgentHello
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxHello))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&hi); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("hello from %s: bad body: %v", id.Name, err))
		return
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("hello from %s: data after the JSON object", id.Name))
		return
	}
	if err := checkHello(hi); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("hello from %s: %v", id.Name, err))
		return
	}
	now := f.o.Now()
	f.mu.Lock()
	h := f.hosts[id.Name]
	var prev api.Host
	if h == nil {
		h = f.newHost(api.Host{Name: id.Name, Joined: now})
		f.hosts[id.Name] = h
		f.startHostLocked(h)
		f.notifyLocked()
	}
	prev = h.rec
	// Generation and drain are the server's: kept.
	h.rec.URL, h.rec.Zone, h.rec.Region, h.rec.CPU, h.rec.MemoryBytes, h.rec.Epoch, h.rec.Version, h.rec.LastHello =
		hi.URL, hi.Zone, hi.Region, hi.CPU, hi.MemoryBytes, hi.Epoch, hi.Version, now
	rec := h.rec
	if rec.URL != prev.URL {
		h.client.HTTP.CloseIdleConnections()
		h.client = f.clientFor(rec)
	}
	if (rec.URL != prev.URL || rec.Epoch != prev.Epoch) && h.followCancel != nil {
		h.followCancel() // list again, at the new address or run
	}
	f.mu.Unlock()
	if err := f.persist(h); err != nil {
		f.log.Error("store host record", "host", id.Name, "error", err)
		writeError(w, http.StatusInternalServerError, "hello: the server could not record the host; see its log")
		return
	}
	switch {
	case prev.URL == "":
		f.event(api.Event{Reason: fmt.Sprintf("host %s joined at %s (%s, %s)", id.Name, rec.URL, where(rec), capacity(rec))}, slog.LevelInfo)
	case prev.Epoch != rec.Epoch || prev.URL != rec.URL:
		f.event(api.Event{Reason: fmt.Sprintf("host %s said hello again: agent restarted at %s (%s, %s)", id.Name, rec.URL, where(rec), capacity(rec))}, slog.LevelInfo)
	}
	w.WriteHeader(http.StatusNoContent)
}

// checkHello reports what is wrong with a hello, every problem at once.
func checkHello(hi api.AgentHello) error {
	var probs []error
	u, err := url.Parse(hi.URL)
	switch {
	case err != nil:
		probs = append(probs, fmt.Errorf("url %q: %v", hi.URL, err))
	case u.Scheme != "https" || u.Hostname() == "" || u.Port() == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		probs = append(probs, fmt.Errorf("url %q: want https://host:port", hi.URL))
	}
	for _, l := range []struct{ key, v string }{{"zone", hi.Zone}, {"region", hi.Region}} {
		if len(l.v) > 63 || strings.IndexFunc(l.v, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }) >= 0 {
			probs = append(probs, fmt.Errorf("%s %q: want at most 63 printable characters without spaces", l.key, l.v))
		}
	}
	if hi.CPU < 0 || math.IsNaN(hi.CPU) || math.IsInf(hi.CPU, 0) {
		probs = append(probs, fmt.Errorf("cpu %v: want a count of cores, 0 or more", hi.CPU))
	}
	if hi.MemoryBytes < 0 {
		probs = append(probs, fmt.Errorf("memory_bytes %d: want 0 or more", hi.MemoryBytes))
	}
	if hi.Epoch == "" || len(hi.Epoch) > 64 {
		probs = append(probs, fmt.Errorf("epoch %q: want 1 to 64 characters", hi.Epoch))
	}
	if len(hi.Version) > 128 {
		probs = append(probs, fmt.Errorf("version: %d characters, want at most 128", len(hi.Version)))
	}
	return errors.Join(probs...)
}

// where reads like `zone "a"` or `region "nyc1", zone "a"`.
func where(h api.Host) string {
	if h.Region == "" {
		return fmt.Sprintf("zone %q", h.Zone)
	}
	return fmt.Sprintf("region %q, zone %q", h.Region, h.Zone)
}

// capacity reads like "2 CPU, 4096 MiB" or "capacity unbounded".
func capacity(h api.Host) string {
	var parts []string
	if h.CPU > 0 {
		parts = append(parts, fmt.Sprintf("%g CPU", h.CPU))
	}
	if h.MemoryBytes > 0 {
		parts = append(parts, fmt.Sprintf("%d MiB", h.MemoryBytes>>20))
	}
	if len(parts) == 0 {
		return "capacity unbounded"
	}
	return strings.Join(parts, ", ")
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: msg})
}
