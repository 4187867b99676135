package adminapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/controller"
)

// AutoscaleRequest is the body of POST /v1/autoscale (package api's).
type AutoscaleRequest = api.AutoscaleRequest

// AutoscaleRoutes registers the auto-scaling routes on mux:
//
//	GET  /v1/autoscale                      policies with value vs target, state, last change
//	POST /v1/autoscale  {"paused": bool}    pause or resume auto scaling (kept across restarts)
//
// A POST when shoal.yaml has no autoscale section is 409 Conflict.
// Authentication is the caller's: wrap mux with RequireToken.
func AutoscaleRoutes(mux *http.ServeMux, c *controller.Controller) {
	mux.Handle("GET /v1/autoscale", Handle(func(w http.ResponseWriter, r *http.Request) error {
		WriteJSON(w, c.Autoscale())
		return nil
	}))
	mux.Handle("POST /v1/autoscale", Handle(func(w http.ResponseWriter, r *http.Request) error {
		var req AutoscaleRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxScaleBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return fmt.Errorf("%w: autoscale body: %v", ErrBadRequest, err)
		}
		if dec.More() {
			return fmt.Errorf("%w: autoscale body: trailing data", ErrBadRequest)
		}
		if req.Paused == nil {
			return fmt.Errorf(`%w: autoscale body: want {"paused": true|false}`, ErrBadRequest)
		}
		if err := c.PauseAutoscale(*req.Paused); err != nil {
			if errors.Is(err, controller.ErrAutoscaleDisabled) {
				return fmt.Errorf("%w: %w", ErrConflict, err)
			}
			return err
		}
		WriteJSON(w, c.Autoscale())
		return nil
	}))
}

// WithMetrics returns h with GET /metrics answering the series h serves
// there (the balancer's) followed by those of extra (the controller's), in
// the Prometheus text format. Other requests go to h unchanged.
func WithMetrics(h http.Handler, extra prometheus.Gatherer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/metrics" {
			h.ServeHTTP(w, r)
			return
		}
		// Ask h for plain, uncompressed text so that the two parts can be
		// concatenated (the text format allows it when names differ).
		inner := r.Clone(r.Context())
		inner.Header.Del("Accept")
		inner.Header.Del("Accept-Encoding")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, inner)
		if rec.Code != http.StatusOK {
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes())
			return
		}
		var buf bytes.Buffer
		buf.Write(rec.Body.Bytes())
		mfs, err := extra.Gather()
		if err != nil {
			WriteError(w, fmt.Errorf("gather metrics: %w", err))
			return
		}
		enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
		for _, mf := range mfs {
			if err := enc.Encode(mf); err != nil {
				WriteError(w, fmt.Errorf("encode metrics: %w", err))
				return
			}
		}
		w.Header().Set("Content-Type", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
		w.Write(buf.Bytes())
	})
}
