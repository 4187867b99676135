package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/shoal-dev/shoal/internal/adminapi"
	"github.com/shoal-dev/shoal/internal/api"
)

// clusterRoutes are the admin API of a cluster's membership (`shoal
// servers`):
//
//	GET    /v1/servers        []api.ServerStatus: raft's configuration, each server's own view
//	POST   /v1/servers        api.ServerAddRequest: add a voter (on the leader; a follower forwards)
//	DELETE /v1/servers/{id}   remove a server (on the leader)
//	POST   /v1/members        a server's URLs (register), on the leader
//	GET    /v1/cluster/self   api.ServerStatus of this server alone
//	/v1/cluster/artifacts/    this server's artifacts (server_cluster_artifacts.go)
//	GET    /v1/cluster/ca     api.ClusterCA: the fleet CA, for a server joining (server_cluster_join.go)
func (s *Server) clusterRoutes(mux *http.ServeMux) {
	s.artifactRoutes(mux)
	mux.Handle("GET /v1/servers", adminapi.Handle(s.listServers))
	mux.Handle("GET /v1/cluster/self", adminapi.Handle(func(w http.ResponseWriter, r *http.Request) error {
		adminapi.WriteJSON(w, s.selfStatus())
		return nil
	}))
	mux.Handle("GET /v1/cluster/ca", adminapi.Handle(func(w http.ResponseWriter, r *http.Request) error {
		key, err := s.ca.KeyPEM()
		if err != nil {
			return err
		}
		s.log.Info("fleet CA sent to a server joining the cluster", "remote", r.RemoteAddr)
		adminapi.WriteJSON(w, api.ClusterCA{CertPEM: string(s.ca.CertificatePEM()), KeyPEM: string(key)})
		return nil
	}))
	mux.Handle("POST /v1/servers", adminapi.Handle(func(w http.ResponseWriter, r *http.Request) error {
		var req api.ServerAddRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
			return fmt.Errorf("%w: the body is not a server to add: %v", adminapi.ErrBadRequest, err)
		}
		if req.ID == "" || req.Address == "" {
			return fmt.Errorf("%w: a server to add needs its id and its raft address (cluster.advertise)", adminapi.ErrBadRequest)
		}
		if err := s.cl.node.AddVoter(r.Context(), req.ID, req.Address); err != nil {
			return clusterError(fmt.Errorf("add server %s at %s: %w", req.ID, req.Address, err))
		}
		s.log.Info("server added to the cluster", "server", req.ID, "addr", req.Address)
		return s.listServers(w, r)
	}))
	mux.Handle("POST /v1/members", adminapi.Handle(func(w http.ResponseWriter, r *http.Request) error {
		var m struct{ ID, AdminURL, FleetURL string }
		var body struct {
			ID       string `json:"id"`
			AdminURL string `json:"admin_url"`
			FleetURL string `json:"fleet_url"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&body); err != nil || body.ID == "" {
			return fmt.Errorf("%w: the body is not a server's URLs", adminapi.ErrBadRequest)
		}
		m.ID, m.AdminURL, m.FleetURL = body.ID, body.AdminURL, body.FleetURL
		return clusterError(s.cl.w.PutMember(api.ClusterMember(m)))
	}))
	mux.Handle("DELETE /v1/servers/{id}", adminapi.Handle(func(w http.ResponseWriter, r *http.Request) error {
		id := r.PathValue("id")
		if err := s.cl.node.RemoveServer(r.Context(), id); err != nil {
			return clusterError(fmt.Errorf("remove server %s: %w", id, err))
		}
		s.log.Info("server removed from the cluster", "server", id)
		adminapi.WriteJSON(w, map[string]string{"removed": id})
		return nil
	}))
}

// selfStatus is this server's own view of itself.
func (s *Server) selfStatus() api.ServerStatus {
	st := s.cl.node.Status()
	return api.ServerStatus{ID: st.ID, Role: st.Role, Term: st.Term, LastContact: st.LastContact,
		AppliedIndex: st.AppliedIndex, AdminURL: s.AdminURL()}
}

// listServers answers GET /v1/servers: every server of raft's
// configuration, with its own view of itself asked of its admin API (its
// URL recorded in the store), this server's read here.
func (s *Server) listServers(w http.ResponseWriter, r *http.Request) error {
	servers, err := s.cl.node.Servers(r.Context())
	if err != nil {
		return clusterError(err)
	}
	out := make([]api.ServerStatus, len(servers))
	for i, srv := range servers {
		st := api.ServerStatus{ID: srv.ID}
		switch m, ok, err := s.st.Member(srv.ID); {
		case srv.ID == s.cl.node.ID():
			st = s.selfStatus()
		case err != nil:
			st.Error = err.Error()
		case !ok:
			st.Error = "its admin URL is not known (recorded when it first leads)"
		default:
			st = s.askStatus(r.Context(), m, r.Header.Get("Authorization"))
		}
		st.ID, st.Address, st.Voter = srv.ID, srv.Addr, srv.Voter
		out[i] = st
	}
	adminapi.WriteJSON(w, out)
	return nil
}

// askStatus asks server m for its own view (GET /v1/cluster/self, with the
// caller's token: the cluster shares it), within 2 s.
func (s *Server) askStatus(ctx context.Context, m api.ClusterMember, auth string) api.ServerStatus {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st := api.ServerStatus{AdminURL: m.AdminURL}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.AdminURL+"/v1/cluster/self", nil)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	req.Header.Set("Authorization", auth)
	resp, err := (&http.Client{Transport: s.cl.proxy}).Do(req)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		st.Error = resp.Status
		return st
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&st); err != nil {
		st.Error = err.Error()
	}
	return st
}

// register records where this server serves (POST /v1/members on the
// leader, with the shared admin token) once a leader knows it, so that
// `shoal servers` can ask it; a leader records itself (lead). It tries
// every second until it succeeds or ctx ends.
func (s *Server) register(ctx context.Context) {
	me := api.ClusterMember{ID: s.cl.node.ID(), AdminURL: s.AdminURL(), FleetURL: s.fleetURL}
	for {
		if m, ok, _ := s.st.Member(me.ID); ok && m == me {
			return
		}
		if ldr, err := s.cl.leaderMember(); err == nil && ldr.ID != me.ID {
			body, _ := json.Marshal(map[string]string{"id": me.ID, "admin_url": me.AdminURL, "fleet_url": me.FleetURL})
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, ldr.AdminURL+"/v1/members", bytes.NewReader(body))
			if err == nil {
				req.Header.Set("Authorization", "Bearer "+s.token)
				if resp, err := (&http.Client{Transport: s.cl.proxy, Timeout: 5 * time.Second}).Do(req); err == nil {
					resp.Body.Close()
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}
