package adminapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/controller"
	"github.com/shoal-dev/shoal/internal/lb"
)

// ScaleRequest is the body of POST /v1/scale (package api's).
type ScaleRequest = api.ScaleRequest

// maxScaleBody bounds request bodies of the controller routes.
const maxScaleBody = 64 << 10

// ControllerRoutes registers the controller's routes on mux:
//
//	GET  /v1/status                          group, release, instances
//	POST /v1/scale         {"desired": n}    set the desired count
//	GET  /v1/events?after=SEQ&limit=N[&follow=true]
//	                                         events after SEQ, oldest first;
//	                                         with follow, newline-delimited
//	                                         JSON until the client leaves
//	GET  /v1/releases                        releases, newest first
//	GET  /v1/instances/{id}/logs?tail=N[&follow=true]
//	                                         plain text, secrets redacted
//
// Authentication is the caller's: wrap mux with RequireToken. With
// WithBalancer, the status also says whether the balancer is in
// maintenance mode; with WithHosts, it lists the fleet's hosts.
func ControllerRoutes(mux *http.ServeMux, c *controller.Controller, opts ...ControllerOption) {
	var o controllerOptions
	for _, opt := range opts {
		opt(&o)
	}
	mux.Handle("GET /v1/status", Handle(func(w http.ResponseWriter, r *http.Request) error {
		WriteJSON(w, o.status(c))
		return nil
	}))
	mux.Handle("POST /v1/scale", Handle(func(w http.ResponseWriter, r *http.Request) error {
		req, err := decodeScale(http.MaxBytesReader(w, r.Body, maxScaleBody))
		if err != nil {
			return err
		}
		if err := c.Scale(r.Context(), *req.Desired); err != nil {
			if errors.Is(err, controller.ErrOutOfRange) {
				return fmt.Errorf("%w: %w", ErrBadRequest, err)
			}
			return err
		}
		WriteJSON(w, o.status(c))
		return nil
	}))
	mux.Handle("GET /v1/events", Handle(func(w http.ResponseWriter, r *http.Request) error {
		return serveEvents(w, r, c)
	}))
	mux.Handle("GET /v1/releases", Handle(func(w http.ResponseWriter, r *http.Request) error {
		rels, err := c.Releases()
		if err != nil {
			return err
		}
		WriteJSON(w, rels)
		return nil
	}))
	mux.Handle("GET /v1/instances/{id}/logs", Handle(func(w http.ResponseWriter, r *http.Request) error {
		q := r.URL.Query()
		tail, err := intParam(q.Get("tail"), 100)
		if err != nil {
			return err
		}
		follow := q.Get("follow") == "true"
		return serveLogs(w, r, c, r.PathValue("id"), tail, follow)
	}))
}

// ControllerOption adds to what ControllerRoutes serves.
type ControllerOption func(*controllerOptions)

type controllerOptions struct {
	balancer *lb.Balancer
	hosts    func() []api.HostStatus
}

// WithBalancer makes GET /v1/status (and the answer of POST /v1/scale)
// carry "maintenance", whether b answers every request with 503, and
// "timing", the app's time and the network's of the group's requests at
// b (groupTiming).
func WithBalancer(b *lb.Balancer) ControllerOption {
	return func(o *controllerOptions) { o.balancer = b }
}

// WithHosts makes GET /v1/status (and the answer of POST /v1/scale)
// carry "hosts": the fleet's hosts as hosts returns them (shoal server
// passes fleet.Status). hosts is called once per answer, concurrently
// from request handlers; it must not block on I/O.
func WithHosts(hosts func() []api.HostStatus) ControllerOption {
	return func(o *controllerOptions) { o.hosts = hosts }
}

// status is the answer of GET /v1/status: the controller's status with
// what the balancer in front of the group adds to it (Maintenance) and the
// fleet's hosts (Hosts).
func (o controllerOptions) status(c *controller.Controller) api.Status {
	st := c.Status()
	if o.balancer != nil {
		bs := o.balancer.Status()
		st.Maintenance = bs.Maintenance
		st.Timing = groupTiming(bs, st.App)
	}
	if o.hosts != nil {
		st.Hosts = o.hosts()
	}
	return st
}

// decodeScale parses a scale request body strictly.
func decodeScale(r io.Reader) (ScaleRequest, error) {
	var req ScaleRequest
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("%w: scale body: %v", ErrBadRequest, err)
	}
	if dec.More() {
		return req, fmt.Errorf("%w: scale body: trailing data", ErrBadRequest)
	}
	if req.Desired == nil {
		return req, fmt.Errorf(`%w: scale body: want {"desired": n}`, ErrBadRequest)
	}
	return req, nil
}

func intParam(s string, def int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: %q is not a non-negative integer", ErrBadRequest, s)
	}
	return n, nil
}

// serveEvents answers GET /v1/events.
func serveEvents(w http.ResponseWriter, r *http.Request, c *controller.Controller) error {
	q := r.URL.Query()
	after, err := intParam(q.Get("after"), 0)
	if err != nil {
		return err
	}
	limit, err := intParam(q.Get("limit"), 100)
	if err != nil {
		return err
	}
	if q.Get("follow") != "true" {
		evs, err := c.Events(uint64(after), limit)
		if err != nil {
			return err
		}
		WriteJSON(w, evs)
		return nil
	}
	// Follow: newline-delimited JSON, flushed per batch, until the client
	// goes away or the controller stops.
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	seq := uint64(after)
	wake, unsubscribe := c.SubscribeEvents()
	defer unsubscribe()
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		evs, err := c.Events(seq, 500)
		if err != nil {
			return nil // headers are sent; end the stream
		}
		for _, e := range evs {
			if enc.Encode(e) != nil {
				return nil
			}
			seq = e.Seq
		}
		if rc.Flush() != nil {
			return nil
		}
		if len(evs) == 500 {
			continue
		}
		select {
		case <-r.Context().Done():
			return nil
		case <-wake:
		case <-keepalive.C:
			// An empty line keeps proxies from closing an idle stream.
			if _, err := io.WriteString(w, "\n"); err != nil {
				return nil
			}
		}
	}
}

// serveLogs answers GET /v1/instances/{id}/logs.
func serveLogs(w http.ResponseWriter, r *http.Request, c *controller.Controller, id string, tail int, follow bool) error {
	fw := &flushWriter{w: w, rc: http.NewResponseController(w)}
	err := c.Logs(r.Context(), id, tail, follow, fw)
	if err != nil && !fw.wrote {
		if errors.Is(err, controller.ErrUnknownInstance) {
			return fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		return err
	}
	return nil
}

// flushWriter writes log text as it comes and flushes after each write,
// sending the headers on the first write.
type flushWriter struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	wrote bool
}

func (f *flushWriter) Write(p []byte) (int, error) {
	if !f.wrote {
		f.wrote = true
		f.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		f.w.WriteHeader(http.StatusOK)
	}
	n, err := f.w.Write(p)
	if err == nil {
		err = f.rc.Flush()
	}
	return n, err
}

// groupTiming picks from bs the timing of the routes to the pool named
// app (the group's pool, in shoal up and shoal server alike) and of the
// listeners that carry any of them, routes first, each in bs's order;
// those without a request yet are left out.
func groupTiming(bs api.LBStatus, app string) []api.TimingStatus {
	var out []api.TimingStatus
	mine := map[string]bool{}
	for _, r := range bs.Routes {
		if r.Pool != app {
			continue
		}
		mine[r.Name] = true
		if r.Timing != nil {
			out = append(out, api.TimingStatus{Kind: "route", Name: r.Name, RequestTiming: *r.Timing})
		}
	}
	if len(mine) == 0 {
		return out
	}
	for _, l := range bs.Listeners {
		carries := len(l.Routes) == 0 // a listener without a list carries every route
		for _, n := range l.Routes {
			carries = carries || mine[n]
		}
		if carries && l.Timing != nil {
			out = append(out, api.TimingStatus{Kind: "listener", Name: l.Name, RequestTiming: *l.Timing})
		}
	}
	return out
}
