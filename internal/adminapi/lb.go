package adminapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/buildinfo"
	"github.com/shoal-dev/shoal/internal/lb"
	"github.com/shoal-dev/shoal/internal/pool"
)

// LBRoutes registers the balancer's admin routes on mux:
//
//	GET    /v1/lb/status                                  pools, targets, maintenance, balancer status
//	GET    /v1/lb/pools                                   pools and targets
//	POST   /v1/lb/pools/{pool}/targets                    {"addr":"host:port","weight":n}
//	DELETE /v1/lb/pools/{pool}/targets/{addr}[?wait=true] drain, then remove
//	POST   /v1/lb/pools/{pool}/targets/{addr}/drain[?wait=true]  {"timeout":"10s"}
//	POST   /v1/lb/pools/{pool}/targets/{addr}/undrain     put a drained target back
//	PUT    /v1/lb/pools/{pool}/targets/{addr}/weight      {"weight":n}
//	POST   /v1/lb/reload                                  re-read the configuration
//	POST   /v1/lb/maintenance                             {"on":true,"retry_after":"30s"}
//	GET    /metrics                                       Prometheus metrics: the balancer's, Go's and the process's, and shoal_build_info
//
// Authentication is not done here: serve mux through RequireToken.
// reload is called by POST /v1/lb/reload; it must re-read and validate
// the configuration and call b.Reload, and return an error that says why
// when the new configuration was rejected (the answer is then 400 and the
// old configuration stays). A nil reload makes the route answer 404.
//
// With wait=true, removal and drain answer when the target has no request
// in flight, or when the client goes away; without it they answer at once.
// Changes made here live until the next reload, which resets the pools'
// targets to the file's.
func LBRoutes(mux *http.ServeMux, b *lb.Balancer, reload func(ctx context.Context) error) {
	h := &lbHandlers{b: b, reload: reload}
	mux.Handle("GET /v1/lb/status", Handle(h.status))
	mux.Handle("GET /v1/lb/pools", Handle(h.pools))
	mux.Handle("POST /v1/lb/pools/{pool}/targets", Handle(h.addTarget))
	mux.Handle("DELETE /v1/lb/pools/{pool}/targets/{addr}", Handle(h.removeTarget))
	mux.Handle("POST /v1/lb/pools/{pool}/targets/{addr}/drain", Handle(h.drainTarget))
	mux.Handle("POST /v1/lb/pools/{pool}/targets/{addr}/undrain", Handle(h.undrainTarget))
	mux.Handle("PUT /v1/lb/pools/{pool}/targets/{addr}/weight", Handle(h.setWeight))
	mux.Handle("POST /v1/lb/reload", Handle(h.reloadConfig))
	mux.Handle("POST /v1/lb/maintenance", Handle(h.maintenance))
	mux.Handle("GET /metrics", metricsHandler(b.Metrics(), buildinfo.Gatherer()))
}

type lbHandlers struct {
	b      *lb.Balancer
	reload func(ctx context.Context) error
}

// classified is an error whose message is err's but which also matches
// kind (one of the sentinels statusOf knows).
type classified struct {
	kind, err error
}

func (c classified) Error() string   { return c.err.Error() }
func (c classified) Unwrap() []error { return []error{c.kind, c.err} }

func as(kind, err error) error { return classified{kind: kind, err: err} }

// poolError maps the pool package's errors to API errors.
func poolError(err error) error {
	switch {
	case errors.Is(err, pool.ErrNotFound):
		return as(ErrNotFound, err)
	case errors.Is(err, pool.ErrExists), errors.Is(err, pool.ErrRemoving):
		return as(ErrConflict, err)
	default:
		// Validation errors of Add and SetWeight (address, weight range).
		return as(ErrBadRequest, err)
	}
}

func (h *lbHandlers) pool(r *http.Request) (*pool.Pool, error) {
	name := r.PathValue("pool")
	p, ok := h.b.Pool(name)
	if !ok {
		return nil, as(ErrNotFound, fmt.Errorf("no pool named %q", name))
	}
	return p, nil
}

func (h *lbHandlers) addTarget(w http.ResponseWriter, r *http.Request) error {
	var body targetBody
	if err := decodeBody(w, r, &body); err != nil {
		return err
	}
	if err := body.check(); err != nil {
		return err
	}
	name := r.PathValue("pool")
	if _, err := h.pool(r); err != nil {
		return err
	}
	if err := h.b.AddTarget(name, pool.TargetSpec{Addr: body.Addr, Weight: body.Weight}); err != nil {
		return poolError(err)
	}
	w.WriteHeader(http.StatusCreated)
	WriteJSON(w, h.targetView(name, body.Addr))
	return nil
}

func (h *lbHandlers) removeTarget(w http.ResponseWriter, r *http.Request) error {
	name, addr := r.PathValue("pool"), r.PathValue("addr")
	if _, err := h.pool(r); err != nil {
		return err
	}
	idle, err := h.b.RemoveTarget(name, addr)
	if err != nil {
		return poolError(err)
	}
	return h.answerDrain(w, r, name, addr, idle)
}

func (h *lbHandlers) drainTarget(w http.ResponseWriter, r *http.Request) error {
	var body drainBody
	if err := decodeBody(w, r, &body); err != nil {
		return err
	}
	timeout, err := body.timeout()
	if err != nil {
		return err
	}
	name, addr := r.PathValue("pool"), r.PathValue("addr")
	if _, err := h.pool(r); err != nil {
		return err
	}
	idle, err := h.b.DrainTarget(name, addr, timeout)
	if err != nil {
		return poolError(err)
	}
	return h.answerDrain(w, r, name, addr, idle)
}

// undrainTarget puts a drained target back in rotation and answers its
// view; 409 when the target is being removed.
func (h *lbHandlers) undrainTarget(w http.ResponseWriter, r *http.Request) error {
	name, addr := r.PathValue("pool"), r.PathValue("addr")
	if _, err := h.pool(r); err != nil {
		return err
	}
	if err := h.b.UndrainTarget(name, addr); err != nil {
		return poolError(err)
	}
	WriteJSON(w, h.targetView(name, addr))
	return nil
}

// answerDrain writes the drain result, first waiting for idle when the
// request asks for it.
func (h *lbHandlers) answerDrain(w http.ResponseWriter, r *http.Request, poolName, addr string, idle <-chan struct{}) error {
	wait, err := waitParam(r)
	if err != nil {
		return err
	}
	res := api.DrainResult{Pool: poolName, Addr: addr}
	if wait {
		select {
		case <-idle:
			res.Idle = true
		case <-r.Context().Done():
			return r.Context().Err() // the client is gone; nothing is written
		}
	} else {
		select {
		case <-idle:
			res.Idle = true
		default:
		}
	}
	WriteJSON(w, res)
	return nil
}

func waitParam(r *http.Request) (bool, error) {
	switch r.URL.Query().Get("wait") {
	case "", "false", "0":
		return false, nil
	case "true", "1":
		return true, nil
	}
	return false, as(ErrBadRequest, errors.New(`wait must be "true" or "false"`))
}

func (h *lbHandlers) setWeight(w http.ResponseWriter, r *http.Request) error {
	var body weightBody
	if err := decodeBody(w, r, &body); err != nil {
		return err
	}
	if err := body.check(); err != nil {
		return err
	}
	p, err := h.pool(r)
	if err != nil {
		return err
	}
	addr := r.PathValue("addr")
	if err := p.SetWeight(addr, *body.Weight); err != nil {
		return poolError(err)
	}
	WriteJSON(w, h.targetView(p.Name(), addr))
	return nil
}

func (h *lbHandlers) reloadConfig(w http.ResponseWriter, r *http.Request) error {
	if h.reload == nil {
		return as(ErrNotFound, errors.New("this balancer has no configuration file to reload"))
	}
	if err := h.reload(r.Context()); err != nil {
		return as(ErrBadRequest, fmt.Errorf("the running configuration is kept: %w", err))
	}
	WriteJSON(w, map[string]bool{"reloaded": true})
	return nil
}

// maintenancePage is the body served in maintenance mode.
const maintenancePage = `<!doctype html>
<html><head><meta charset="utf-8"><title>Down for maintenance</title></head>
<body><h1>Down for maintenance</h1><p>We will be back shortly.</p></body></html>
`

func (h *lbHandlers) maintenance(w http.ResponseWriter, r *http.Request) error {
	var body maintenanceBody
	if err := decodeBody(w, r, &body); err != nil {
		return err
	}
	retry, err := body.check()
	if err != nil {
		return err
	}
	if *body.On {
		h.b.SetMaintenance(&lb.Maintenance{Page: maintenancePage, RetryAfter: retry})
	} else {
		h.b.SetMaintenance(nil)
	}
	WriteJSON(w, map[string]bool{"maintenance": *body.On})
	return nil
}
