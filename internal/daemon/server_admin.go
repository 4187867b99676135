package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/internal/adminapi"
	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/controller"
	"github.com/shoal-dev/shoal/internal/fleet"
)

// adminHandler routes the server's admin API, every path but the
// dashboard's behind the bearer token. Server-wide routes:
//
//	GET  /v1/apps                      []api.AppSummary
//	GET  /v1/hosts                     []api.HostStatus: the agents (fleet.Status), then the balancer nodes
//	GET  /v1/hosts/events?after=N&limit=M   the fleet's events, oldest first
//	POST /v1/hosts/{name}/drain        place nothing more on the host; its api.HostStatus
//	POST /v1/hosts/{name}/undrain      place instances on it again
//	POST /v1/join-tokens               api.JoinTokenRequest -> api.JoinTokenAnswer
//	HEAD|PUT|GET /v1/artifacts/{digest}  one artifact store for every app
//	GET  /v1/backup                    the whole desired state as a store file (server_backup.go; a cluster's leader's)
//	/v1/lb/...                         the balancer's (adminapi.LBRoutes)
//	GET  /metrics                      the balancer's, every app's (label app) and the fleet's (server_metrics.go)
//	/ui/                               the dashboard of every app (server_ui.go), its own login
//
// Every other /v1/ path is an app's (adminapi's controller, deploy and
// autoscale routes), chosen by the Shoal-App request header: without it
// the only app, or 400 naming the apps when there are several; an unknown
// app is 404 saying that `shoal deploy` creates it. POST /v1/deploy for
// an unknown app creates it from the configuration it sends. An app's
// answers name it in Shoal-App.
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	adminapi.LBRoutes(mux, s.bal, nil)
	adminapi.ArtifactRoutes(mux, s.uploads)
	mux.Handle("GET /v1/apps", adminapi.Handle(s.listApps))
	mux.Handle("GET /v1/hosts", adminapi.Handle(func(w http.ResponseWriter, r *http.Request) error {
		adminapi.WriteJSON(w, s.hostsAndNodes())
		return nil
	}))
	mux.Handle("GET /v1/hosts/events", adminapi.Handle(s.hostEvents))
	mux.Handle("POST /v1/hosts/{name}/drain", adminapi.Handle(func(w http.ResponseWriter, r *http.Request) error {
		return s.answerHost(w, r.PathValue("name"), s.drainHost(r.Context(), r.PathValue("name")))
	}))
	mux.Handle("POST /v1/hosts/{name}/undrain", adminapi.Handle(func(w http.ResponseWriter, r *http.Request) error {
		return s.answerHost(w, r.PathValue("name"), s.fleet().Undrain(r.PathValue("name")))
	}))
	mux.Handle("POST /v1/join-tokens", adminapi.Handle(s.joinToken))
	mux.Handle("POST /v1/deploy", adminapi.Handle(s.deploy))
	mux.Handle("GET /v1/backup", adminapi.Handle(s.backup))
	if s.cl != nil {
		s.clusterRoutes(mux) // server_cluster_admin.go
	}
	mux.Handle("/v1/", adminapi.Handle(func(w http.ResponseWriter, r *http.Request) error {
		a, err := s.appFor(r.Header.Get(adminapi.AppHeader))
		if err != nil {
			return err
		}
		a.handler.ServeHTTP(w, r)
		if r.Method == http.MethodPost {
			s.refreshRoutes(a) // a rollback or env change may move its routes
		}
		return nil
	}))
	// The dashboard logs in with the token itself (session cookie,
	// CSRF), so it sits outside the API's bearer-token check.
	root := http.NewServeMux()
	root.Handle("/ui/", s.ui)
	root.Handle("/", adminapi.RequireToken(s.token, adminapi.WithMetrics(mux, s.metrics())))
	return root
}

// appFor returns the app a request names in its Shoal-App header (name),
// or the only app when it names none.
func (s *Server) appFor(name string) (*serverApp, error) {
	s.appsMu.Lock()
	defer s.appsMu.Unlock()
	if name != "" {
		if a, ok := s.apps[name]; ok {
			return a, nil
		}
		return nil, fmt.Errorf("%w: this server has no app %s; shoal deploy creates it", adminapi.ErrNotFound, name)
	}
	switch apps := s.sortedAppsLocked(); len(apps) {
	case 0:
		return nil, fmt.Errorf("%w: this server has no app yet; shoal deploy creates one", adminapi.ErrNotFound)
	case 1:
		return apps[0], nil
	default:
		names := make([]string, len(apps))
		for i, a := range apps {
			names[i] = a.name
		}
		return nil, fmt.Errorf("%w: this server has several apps (%s): name one with --app or a shoal.yaml", adminapi.ErrBadRequest, strings.Join(names, ", "))
	}
}

// deploy serves POST /v1/deploy: the app is the one the sent shoal.yaml
// names (which must agree with the Shoal-App header when one is sent), or
// the header's when no configuration is sent (the app's answer says
// what is missing). An unknown app is created, unless its routes would
// take another app's (409 naming it); a known app's new routes are
// checked the same way before its deploy runs, and set once it has. In a
// cluster the deploy first waits until its artifact is held by a majority
// of the servers (holdOnMajority), bounded by the request's context.
func (s *Server) deploy(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, adminapi.MaxDeployBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("%w: the deploy body is over %d bytes", adminapi.ErrTooLarge, mbe.Limit)
		}
		return fmt.Errorf("%w: read the deploy body: %v", adminapi.ErrBadRequest, err)
	}
	name := r.Header.Get(adminapi.AppHeader)
	var req api.DeployRequest
	decoded := json.Unmarshal(body, &req) == nil
	if decoded && !req.ConfigOnly {
		// In a cluster, no release is committed before its artifact is
		// on a majority of the servers (server_cluster_artifacts.go).
		if err := s.holdOnMajority(r.Context(), req.Digest); err != nil {
			return err
		}
	}
	if decoded && req.Config != "" {
		cfg, err := controller.ParseConfig(req.ConfigFile, []byte(req.Config))
		if err != nil {
			return fmt.Errorf("%w: %w", adminapi.ErrBadRequest, err)
		}
		if name != "" && cfg.Name != name {
			return fmt.Errorf("%w: the deploy is for app %s (Shoal-App) but its shoal.yaml names app %s", adminapi.ErrBadRequest, name, cfg.Name)
		}
		if a, ok := s.app(cfg.Name); ok {
			s.appsMu.Lock()
			err = s.routeConflictLocked(cfg.Name, cfg)
			s.appsMu.Unlock()
			if err != nil {
				return err
			}
			return s.forwardDeploy(w, r, a, body)
		}
		a, err := s.createApp(r.Context(), cfg)
		if err != nil {
			return err
		}
		return s.forwardDeploy(w, r, a, body)
	}
	a, err := s.appFor(name)
	if err != nil {
		return err
	}
	return s.forwardDeploy(w, r, a, body)
}

// forwardDeploy hands the deploy (its body read already) to app a, then
// sets a's routes from the release it serves afterwards.
func (s *Server) forwardDeploy(w http.ResponseWriter, r *http.Request, a *serverApp, body []byte) error {
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	a.handler.ServeHTTP(w, r)
	s.refreshRoutes(a)
	return nil
}

// listApps serves GET /v1/apps.
func (s *Server) listApps(w http.ResponseWriter, r *http.Request) error {
	s.appsMu.Lock()
	type entry struct {
		a     *serverApp
		hosts []string
		path  string
	}
	var apps []entry
	for _, a := range s.sortedAppsLocked() {
		apps = append(apps, entry{a, append([]string{}, a.hosts...), a.path})
	}
	s.appsMu.Unlock()
	out := make([]api.AppSummary, 0, len(apps))
	for _, e := range apps {
		out = append(out, e.a.summary(e.hosts, e.path))
	}
	adminapi.WriteJSON(w, out)
	return nil
}

// drainHost marks host name draining: placement chooses it no more.
// Moving its instances away is the replacement of each app's controller
// (launch first), asked for through the fleet's Host.
func (s *Server) drainHost(_ context.Context, name string) error {
	return s.fleet().Drain(name)
}

// answerHost answers a drain or undrain with the host's status, or its
// error (404 for an unknown host).
func (s *Server) answerHost(w http.ResponseWriter, name string, err error) error {
	if errors.Is(err, fleet.ErrUnknownHost) {
		return fmt.Errorf("%w: %w", adminapi.ErrNotFound, err)
	}
	if err != nil {
		return err
	}
	for _, h := range s.hostStatus() {
		if h.Name == name {
			adminapi.WriteJSON(w, h)
			return nil
		}
	}
	return fmt.Errorf("%w: host %s", adminapi.ErrNotFound, name)
}

// hostEvents serves GET /v1/hosts/events?after=N&limit=M: up to limit
// (default 100, at most 1000) fleet events with a sequence number above
// after, oldest first.
func (s *Server) hostEvents(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var after uint64
	if v := q.Get("after"); v != "" {
		var err error
		if after, err = strconv.ParseUint(v, 10, 64); err != nil {
			return fmt.Errorf("%w: after=%q is not a sequence number", adminapi.ErrBadRequest, v)
		}
	}
	var err error
	limit := 100
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 1000 {
			return fmt.Errorf("%w: limit=%q: want 1 to 1000", adminapi.ErrBadRequest, v)
		}
	}
	out, err := s.hostEventsAfter(after, limit)
	if err != nil {
		return err
	}
	adminapi.WriteJSON(w, out)
	return nil
}

// maxTokenTTL bounds a join token's lifetime.
const maxTokenTTL = 7 * 24 * time.Hour

// joinToken serves POST /v1/join-tokens: a one-time token for a node of
// the role asked (agent when empty) that works for ttl (1h when empty, at
// most a week).
func (s *Server) joinToken(w http.ResponseWriter, r *http.Request) error {
	var req api.JoinTokenRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: body: %v", adminapi.ErrBadRequest, err)
	}
	if req.Role == "" {
		req.Role = api.RoleAgent
	}
	if !req.Role.Valid() {
		return fmt.Errorf("%w: role %q: want %s or %s", adminapi.ErrBadRequest, req.Role, api.RoleAgent, api.RoleLB)
	}
	var ttl time.Duration
	if req.TTL != "" {
		var err error
		if ttl, err = time.ParseDuration(req.TTL); err != nil || ttl <= 0 || ttl > maxTokenTTL {
			return fmt.Errorf("%w: ttl %q: want a duration from 1s to %s, such as 1h", adminapi.ErrBadRequest, req.TTL, maxTokenTTL)
		}
	}
	tok, rec, err := s.pki.NewToken(req.Role, ttl)
	if err != nil {
		return err
	}
	s.log.Info("join token made", "token_id", rec.ID, "role", string(rec.Role), "expires", rec.Expires)
	adminapi.WriteJSON(w, api.JoinTokenAnswer{Token: tok, ID: rec.ID, Expires: rec.Expires})
	return nil
}

// hostsAndNodes is the fleet as `shoal hosts` and the dashboard's hosts
// card show it: the agents' hosts (fleet.Status), then the balancer nodes
// that follow this server (lbStream.hosts), each sorted by name; never
// nil.
func (s *Server) hostsAndNodes() []api.HostStatus {
	return append(append([]api.HostStatus{}, s.hostStatus()...), s.lbs.hosts()...)
}
