package adminapi

import (
	"net/http"

	"github.com/shoal-dev/shoal/internal/api"
)

// status answers GET /v1/lb/status with the balancer's lb.Status.
func (h *lbHandlers) status(w http.ResponseWriter, r *http.Request) error {
	WriteJSON(w, h.b.Status())
	return nil
}

// pools answers GET /v1/lb/pools with the pools part of lb.Status.
func (h *lbHandlers) pools(w http.ResponseWriter, r *http.Request) error {
	WriteJSON(w, api.PoolList{Pools: h.b.Status().Pools})
	return nil
}

// targetView returns the status of one target, or nil if it is gone.
func (h *lbHandlers) targetView(poolName, addr string) any {
	for _, p := range h.b.Status().Pools {
		if p.Name != poolName {
			continue
		}
		for _, t := range p.Targets {
			if t.Addr == addr {
				return t
			}
		}
	}
	return nil
}
