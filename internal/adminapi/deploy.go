package adminapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/controller"
	"github.com/shoal-dev/shoal/internal/rollout"
)

// The bodies of the deploy routes are package api's.
type (
	// DeployRequest is the body of POST /v1/deploy.
	DeployRequest = api.DeployRequest
	// RollbackRequest is the body of POST /v1/rollback; Version 0 means
	// the previous release.
	RollbackRequest = api.RollbackRequest
	// EnvRequest is the body of POST /v1/env.
	EnvRequest = api.EnvRequest
	// BuildFailure is the body of POST /v1/deploy/build-failed.
	BuildFailure = api.BuildFailure
)

// progressEvery is how often a deploy stream reports progress.
const progressEvery = 250 * time.Millisecond

// DeployRoutes registers the deploy routes on mux:
//
//	POST /v1/deploy   api.DeployRequest            NDJSON stream of DeployLine
//	POST /v1/rollback {"version": n}               NDJSON stream of DeployLine
//	POST /v1/deploy/abort                          turn the rollout back
//	POST /v1/deploy/build-failed api.BuildFailure  record a deployer's failed build (event)
//	GET  /v1/deploy                                the rollout in progress, or null
//	GET  /v1/env                                   env overrides, secrets redacted
//	POST /v1/env      {"set":[...],"unset":[...]}  NDJSON stream: config-only deploy
//
// A second deploy while one runs answers 409 at once (before streaming)
// unless "wait" is set; a deploy without shoal.yaml's text, with a bad one
// (every problem listed), a bad environment or an artifact this shoal does
// not hold ("upload it first") answers 400.
// The artifact routes that a deploy uploads through come with them
// (ArtifactRoutes). Authentication is the caller's: wrap mux with
// RequireToken.
func DeployRoutes(mux *http.ServeMux, c *controller.Controller) {
	ArtifactRoutes(mux, c)
	mux.Handle("POST /v1/deploy", Handle(func(w http.ResponseWriter, r *http.Request) error {
		var req DeployRequest
		if err := decodeStrict(w, r, &req, MaxDeployBody); err != nil {
			return err
		}
		creq, err := deployRequest(req)
		if err != nil {
			return deployStatus(err)
		}
		return streamDeploy(w, r, func(log io.Writer) (int, error) {
			creq.Log = log
			return c.Deploy(r.Context(), creq)
		}, c)
	}))
	mux.Handle("POST /v1/rollback", Handle(func(w http.ResponseWriter, r *http.Request) error {
		var req RollbackRequest
		if err := decodeStrict(w, r, &req, maxScaleBody); err != nil {
			return err
		}
		if req.Version < 0 {
			return fmt.Errorf("%w: version %d", ErrBadRequest, req.Version)
		}
		return streamDeploy(w, r, func(io.Writer) (int, error) {
			if err := c.Rollback(r.Context(), req.Version); err != nil {
				return req.Version, err
			}
			// Version 0 asked for "the previous release": report the one
			// that now serves.
			return c.Release().Version, nil
		}, c)
	}))
	mux.Handle("POST /v1/deploy/abort", Handle(func(w http.ResponseWriter, r *http.Request) error {
		if err := c.AbortDeploy(r.Context()); err != nil {
			if errors.Is(err, controller.ErrNoRollout) {
				return fmt.Errorf("%w: %w", ErrConflict, err)
			}
			return err
		}
		WriteJSON(w, c.Rollout())
		return nil
	}))
	mux.Handle("POST /v1/deploy/build-failed", Handle(func(w http.ResponseWriter, r *http.Request) error {
		var req BuildFailure
		if err := decodeStrict(w, r, &req, maxScaleBody); err != nil {
			return err
		}
		if strings.TrimSpace(req.Reason) == "" {
			return fmt.Errorf("%w: a build failure needs its reason", ErrBadRequest)
		}
		if err := c.RecordBuildFailure(req.Reason, req.By); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}))
	mux.Handle("GET /v1/deploy", Handle(func(w http.ResponseWriter, r *http.Request) error {
		WriteJSON(w, c.Rollout())
		return nil
	}))
	mux.Handle("GET /v1/env", Handle(func(w http.ResponseWriter, r *http.Request) error {
		vs, err := c.EnvOverrides()
		if err != nil {
			return err
		}
		WriteJSON(w, vs)
		return nil
	}))
	mux.Handle("POST /v1/env", Handle(func(w http.ResponseWriter, r *http.Request) error {
		var req EnvRequest
		if err := decodeStrict(w, r, &req, maxScaleBody); err != nil {
			return err
		}
		if len(req.Set)+len(req.Unset) == 0 {
			return fmt.Errorf("%w: nothing to set or unset", ErrBadRequest)
		}
		return streamDeploy(w, r, func(log io.Writer) (int, error) {
			return c.SetEnv(r.Context(), req.Set, req.Unset, controller.DeployRequest{Wait: req.Wait, By: "shoal env", Log: log})
		}, c)
	}))
}

// MaxDeployBody bounds the body of POST /v1/deploy: shoal.yaml's text and
// the resolved environment, settings JSON included.
const MaxDeployBody = 8 << 20

// deployRequest checks a deploy body and turns it into the controller's
// request: the configuration parsed as sent (it names files of the
// deployer's machine, never read here), the artifact named unless
// ConfigOnly.
func deployRequest(req DeployRequest) (controller.DeployRequest, error) {
	switch {
	case req.Config == "":
		return controller.DeployRequest{}, fmt.Errorf("%w: the deploy sends no configuration: shoal deploy must send shoal.yaml's text (config), its environment and its artifact's digest (an older shoal CLI? use one of the daemon's version)", ErrBadRequest)
	case req.ConfigOnly && req.Digest != "":
		return controller.DeployRequest{}, fmt.Errorf("%w: config_only reuses the current artifact: send no digest with it", ErrBadRequest)
	case !req.ConfigOnly && req.Digest == "":
		return controller.DeployRequest{}, fmt.Errorf("%w: the deploy names no artifact: send its digest (after PUT /v1/artifacts/{digest}), or config_only", ErrBadRequest)
	}
	cfg, err := controller.ParseConfig(req.ConfigFile, []byte(req.Config))
	if err != nil {
		return controller.DeployRequest{}, err
	}
	return controller.DeployRequest{Config: cfg, Env: req.Env, Digest: req.Digest, Wait: req.Wait, By: req.By}, nil
}

// decodeStrict decodes a JSON body of at most limit bytes into v; an
// empty body leaves v zero.
func decodeStrict(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: body: %v", ErrBadRequest, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: body: trailing data", ErrBadRequest)
	}
	return nil
}

// deployStatus maps errors a deploy returns before anything started. The
// message stays the controller's: the status is the only thing added, so
// that the CLI does not print "not found: unknown release ...".
func deployStatus(err error) error {
	var locked *rollout.LockedError
	switch {
	case errors.As(err, &locked):
		return &statusError{status: ErrConflict, err: err}
	case errors.Is(err, controller.ErrInvalidConfig), errors.Is(err, controller.ErrInvalidEnv),
		errors.Is(err, controller.ErrUnknownArtifact):
		return &statusError{status: ErrBadRequest, err: err}
	case errors.Is(err, controller.ErrUnknownRelease):
		return &statusError{status: ErrNotFound, err: err}
	}
	return err
}

// streamDeploy runs fn and streams its log lines and the rollout's
// progress as NDJSON. Errors that occur before the first line is written
// (lock, bad config) are returned as a plain error status instead.
func streamDeploy(w http.ResponseWriter, r *http.Request, fn func(io.Writer) (int, error), c *controller.Controller) error {
	s := &deployStream{w: w, rc: http.NewResponseController(w), enc: json.NewEncoder(w)}
	type outcome struct {
		v   int
		err error
	}
	done := make(chan outcome, 1)
	go func() { // owned: the handler waits for done below
		v, err := fn(s)
		done <- outcome{v, err}
	}()
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	for {
		select {
		case o := <-done:
			s.flushPartial()
			res := &api.DeployResult{OK: o.err == nil, Version: o.v}
			if o.err != nil {
				// Nothing to do is an answer, not a failure: a rollback to
				// the current release says so in the result as a deploy does.
				if !s.started() && !errors.Is(o.err, controller.ErrNoChange) {
					return deployStatus(o.err)
				}
				res.Error = o.err.Error()
				var de *controller.DeployError
				if errors.As(o.err, &de) {
					res.Final, res.Logs = &de.Progress, de.Logs
				}
				if errors.Is(o.err, controller.ErrNoChange) {
					res.OK, res.Unchanged = true, true
				}
			}
			s.line(api.DeployLine{Result: res})
			return nil
		case <-tick.C:
			if p := c.Rollout(); p != nil {
				s.line(api.DeployLine{Progress: p})
			}
		}
	}
}

// deployStream writes NDJSON lines; it is an io.Writer for log text,
// turned into one Log line per text line. Safe for concurrent use.
type deployStream struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	enc *json.Encoder

	mu      sync.Mutex
	begun   bool
	partial []byte
}

func (s *deployStream) started() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.begun
}

func (s *deployStream) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.partial = append(s.partial, p...)
	var lines []string
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		lines = append(lines, string(s.partial[:i]))
		s.partial = s.partial[i+1:]
	}
	s.mu.Unlock()
	for _, l := range lines {
		s.line(api.DeployLine{Log: l})
	}
	return len(p), nil
}

func (s *deployStream) flushPartial() {
	s.mu.Lock()
	rest := string(s.partial)
	s.partial = nil
	s.mu.Unlock()
	if rest != "" {
		s.line(api.DeployLine{Log: rest})
	}
}

func (s *deployStream) line(l api.DeployLine) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.begun {
		s.begun = true
		s.w.Header().Set("Content-Type", "application/x-ndjson")
		s.w.WriteHeader(http.StatusOK)
	}
	if s.enc.Encode(l) == nil {
		s.rc.Flush()
	}
}
