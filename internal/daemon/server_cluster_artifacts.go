package daemon

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// artifactSync is how often a cluster's follower looks for artifacts of
// the replicated releases that it does not hold.
const artifactSync = 2 * time.Second

// syncArtifacts keeps this server's artifact store complete while it
// follows: every release in the replica whose artifact it lacks is
// fetched from the leader (GET /v1/artifacts/{digest} of its admin API,
// with the shared token) and verified by digest as an upload is
// (controller.Uploads.PutArtifact). So a deploy's artifact is on every
// server soon after the deploy, and a new leader can run the releases of
// one that died. Runs until ctx ends; failures are retried at the next
// round.
func (s *Server) syncArtifacts(ctx context.Context) {
	hc := &http.Client{Transport: s.cl.proxy}
	for {
		if !s.cl.node.IsLeader() {
			for _, d := range s.missingArtifacts() {
				if err := s.fetchArtifact(ctx, hc, d); err != nil {
					s.log.Warn("artifact not fetched from the leader; trying again", "digest", d, "error", err)
					break
				}
				s.log.Info("artifact fetched from the leader", "digest", d)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(artifactSync):
		}
	}
}

// missingArtifacts are the digests of the replicated releases that this
// server's artifact store lacks.
func (s *Server) missingArtifacts() []string {
	groups, err := s.st.Groups()
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, g := range groups {
		rels, err := s.st.Releases(g.App)
		if err != nil {
			continue
		}
		for _, r := range rels {
			if r.Digest == "" || seen[r.Digest] {
				continue
			}
			seen[r.Digest] = true
			if held, err := s.uploads.HasArtifact(r.Digest); err == nil && !held {
				out = append(out, r.Digest)
			}
		}
	}
	return out
}

// fetchArtifact copies artifact d from the leader.
func (s *Server) fetchArtifact(ctx context.Context, hc *http.Client, d string) error {
	m, err := s.cl.leaderMember()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.AdminURL+"/v1/artifacts/"+d, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s/v1/artifacts/%s: %s", m.AdminURL, d, resp.Status)
	}
	_, err = s.uploads.PutArtifact(ctx, d, resp.Body)
	return err
}
