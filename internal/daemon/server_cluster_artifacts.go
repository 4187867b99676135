package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/internal/adminapi"
	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/release"
)

// Artifacts in a cluster. Every server keeps a copy of the artifact of
// every replicated release, so that any of them can lead and run the
// releases:
//
//	deploy on the leader --> holdOnMajority(digest) --POST /v1/cluster/artifacts/{d}--> each other voter
//	                              |                      (it fetches d from a peer now, answers once held)
//	                              | a majority of the voters hold d (the leader counts)
//	                              v
//	                         the deploy goes on and commits its release
//	every server, every 2 s: syncArtifacts fetches what its releases lack from the leader or any peer;
//	                         a follower that caught up with the leader prunes what no release names
//
// Peers serve their own copies on GET /v1/cluster/artifacts/{d} (never
// forwarded to the leader), so a new leader that lacks an artifact takes
// it from a follower that holds it.

// artifactSync is how often a server of a cluster looks for artifacts of
// the replicated releases that it does not hold.
const artifactSync = 2 * time.Second

// artifactFetchTimeout bounds one copy of an artifact from a peer (up to
// 2 GiB), and so how long a deploy waits for the majority at most.
const artifactFetchTimeout = 5 * time.Minute

// askedGrace is how long a server keeps an artifact that a deploy asked
// it to hold while no release names it yet, like an upload's hour
// (controller.Uploads): the release follows the deploy's check.
const askedGrace = time.Hour

// peerArtifacts is a server's side of the copying between servers.
type peerArtifacts struct {
	// store serialises the changes of the artifact store made here:
	// copies from peers and pruning, so that a copy is never pruned as
	// it lands.
	store sync.Mutex
	mu    sync.Mutex // guards asked
	// asked: when a deploy asked this server for an artifact that no
	// release named yet (pruning keeps it for askedGrace).
	asked map[string]time.Time
}

// ask records that a deploy asked this server to hold artifact d.
func (p *peerArtifacts) ask(d string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.asked == nil {
		p.asked = map[string]time.Time{}
	}
	p.asked[d] = time.Now()
}

// stillAsked returns the artifacts asked for within askedGrace that no
// digest of released names, and forgets the others: from its release on,
// the release keeps an artifact.
func (p *peerArtifacts) stillAsked(released []string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for d, at := range p.asked {
		if slices.Contains(released, d) || time.Since(at) > askedGrace {
			delete(p.asked, d)
			continue
		}
		out = append(out, d)
	}
	return out
}

// artifactRoutes are the cluster's own artifact routes, served by the
// server that receives them (under /v1/cluster/, never forwarded):
//
//	GET  /v1/cluster/artifacts/{digest}  this server's copy (404 when it holds none)
//	POST /v1/cluster/artifacts/{digest}  hold it and, for an image, its layers: fetched from a peer now
//	                                     if missing; 200 once all are held
func (s *Server) artifactRoutes(mux *http.ServeMux) {
	mux.Handle("GET /v1/cluster/artifacts/{digest}", adminapi.Handle(func(w http.ResponseWriter, r *http.Request) error {
		return adminapi.ServeArtifact(w, r, s.uploads)
	}))
	mux.Handle("POST /v1/cluster/artifacts/{digest}", adminapi.Handle(func(w http.ResponseWriter, r *http.Request) error {
		d := r.PathValue("digest")
		if _, err := s.uploads.HasArtifact(d); err != nil {
			return fmt.Errorf("%w: %w", adminapi.ErrBadRequest, err)
		}
		// A copy begun goes on when the leader stops waiting (it has
		// its majority): the next release needs it here anyway.
		s.cl.arts.ask(d) // before the copy lands, so pruning keeps it
		if err := s.fetchRelease(context.WithoutCancel(r.Context()), d); err != nil {
			return err
		}
		adminapi.WriteJSON(w, map[string]string{"server": s.cl.node.ID(), "digest": d})
		return nil
	}))
}

// holdOnMajority returns once artifact d and, for an image stored by
// layer, every layer artifact it names (release.Store.Missing) are held
// by a majority of the cluster's voters, this server (the leader, which
// holds them) counted: every other voter is asked to fetch them now
// (POST /v1/cluster/artifacts/{d}) and answers once it holds them all,
// each verified by digest as an upload is. So a release is committed
// only when everything it needs survives the loss of a minority of
// servers. It returns as soon as the majority confirmed (the others go on
// copying, or take what they lack at their next syncArtifacts round);
// otherwise, once every voter answered or ctx ended, an error wrapping
// adminapi.ErrUnavailable (503, not retried by the client: the deploy did
// nothing) that names each server that did not confirm and what it lacks.
// Outside a cluster, in a cluster of one, and for an artifact this server
// does not hold with all its layers (the deploy reports that itself), it
// returns nil at once.
func (s *Server) holdOnMajority(ctx context.Context, d string) error {
	if s.cl == nil || !release.ValidDigest(d) {
		return nil
	}
	if lacks, err := s.arts.Missing(d); err != nil || len(lacks) > 0 {
		return nil
	}
	servers, err := s.cl.node.Servers(ctx)
	if err != nil {
		return clusterError(fmt.Errorf("artifact %s: the cluster's servers: %w", d, err))
	}
	self := s.cl.node.ID()
	voters := 0
	var others []string
	for _, srv := range servers {
		if !srv.Voter {
			continue
		}
		voters++
		if srv.ID != self {
			others = append(others, srv.ID)
		}
	}
	need, held := voters/2+1, 1
	if held >= need {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, artifactFetchTimeout)
	type answer struct {
		id  string
		err error
	}
	// Every asking goroutine sends once into the buffer, so none blocks
	// when this returns early: then cancel ends their calls, and they
	// are waited for.
	answers := make(chan answer, len(others))
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	for _, id := range others {
		wg.Go(func() { answers <- answer{id, s.askToHold(ctx, id, d)} })
	}
	var refused []string
	waiting := slices.Clone(others)
	for len(waiting) > 0 && held < need {
		select {
		case a := <-answers:
			waiting = slices.DeleteFunc(waiting, func(id string) bool { return id == a.id })
			if a.err != nil {
				refused = append(refused, fmt.Sprintf("%s (%v)", a.id, a.err))
				continue
			}
			held++
		case <-ctx.Done():
			for _, id := range waiting {
				refused = append(refused, fmt.Sprintf("%s (no answer: %v)", id, context.Cause(ctx)))
			}
			waiting = nil
		}
	}
	if held >= need {
		s.log.Info("artifact held by a majority of the cluster", "digest", d, "held", held, "voters", voters)
		return nil
	}
	slices.Sort(refused)
	return fmt.Errorf("%w: artifact %s (with its layers) is held by %d of the cluster's %d servers and a release needs it on a majority (%d) before it is committed; not confirmed by %s; nothing was deployed",
		adminapi.ErrUnavailable, d, held, voters, need, strings.Join(refused, ", "))
}

// askToHold asks server id to hold artifact d (POST
// /v1/cluster/artifacts/{d} at its admin URL, with the shared token) and
// returns nil once it answers that it does.
func (s *Server) askToHold(ctx context.Context, id, d string) error {
	m, ok, err := s.st.Member(id)
	if err != nil {
		return err
	}
	if !ok || m.AdminURL == "" {
		return errors.New("its admin URL is not known yet (it registers when it starts)")
	}
	resp, err := s.peerCall(ctx, http.MethodPost, m, d)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return peerError(resp)
	}
	return nil
}

// syncArtifacts keeps this server's artifact store complete on every
// server of a cluster, the leader included (a new leader may lack what a
// dead one uploaded): every release in the replica whose artifact it
// lacks is fetched from a peer (fetchArtifact). A follower that has
// applied everything the leader committed then removes the artifacts no
// replicated release names (pruneArtifacts), as the leader's controllers
// do when they prune releases. Runs until ctx ends; failures are retried
// at the next round.
func (s *Server) syncArtifacts(ctx context.Context) {
	for {
		for _, d := range s.missingArtifacts() {
			if err := s.fetchArtifact(ctx, d); err != nil {
				s.log.Warn("artifact not copied from a peer; trying again", "digest", d, "error", err)
				break
			}
		}
		s.pruneArtifacts()
		select {
		case <-ctx.Done():
			return
		case <-time.After(artifactSync):
		}
	}
}

// releasedArtifacts are the digests of every release in the replica, of
// every app.
func (s *Server) releasedArtifacts() ([]string, error) {
	groups, err := s.st.Groups()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, g := range groups {
		rels, err := s.st.Releases(g.App)
		if err != nil {
			return nil, err
		}
		for _, r := range rels {
			if r.Digest != "" && !slices.Contains(out, r.Digest) {
				out = append(out, r.Digest)
			}
		}
	}
	return out, nil
}

// missingArtifacts are the digests of the replicated releases that this
// server's artifact store lacks.
func (s *Server) missingArtifacts() []string {
	all, err := s.releasedArtifacts()
	if err != nil {
		s.log.Warn("list releases for their artifacts", "error", err)
		return nil
	}
	// An image kept by layer is several artifacts: Missing names the
	// release's digest while it is missing, then the layers it lacks.
	var missing []string
	for _, d := range all {
		m, err := s.arts.Missing(d)
		if err != nil {
			s.log.Warn("artifacts of a release", "digest", d, "error", err)
			continue
		}
		missing = append(missing, m...)
	}
	return missing
}

// pruneArtifacts removes, on a follower whose replica has applied every
// entry the leader told it committed, the artifacts that no replicated
// release names, but one that a deploy asked for within askedGrace and
// that no release named yet (its release follows). A follower still replaying its log, or cut off from the
// leader, prunes nothing: its replica may lack releases.
func (s *Server) pruneArtifacts() {
	st := s.cl.node.Status()
	if st.Role != "Follower" || st.Leader == "" || st.CommitIndex == 0 || st.AppliedIndex < st.CommitIndex ||
		time.Since(st.LastContact) > artifactSync {
		return
	}
	s.cl.arts.store.Lock()
	defer s.cl.arts.store.Unlock()
	keep, err := s.releasedArtifacts()
	if err != nil {
		s.log.Warn("list releases for pruning", "error", err)
		return
	}
	gone, err := s.arts.Prune(append(keep, s.cl.arts.stillAsked(keep)...))
	if err != nil {
		s.log.Warn("prune artifacts", "error", err)
	}
	for _, d := range gone {
		s.log.Info("artifact pruned: no replicated release names it", "digest", d)
	}
}

// fetchArtifact makes this server hold artifact d: nothing when it does;
// else a copy from the leader or, failing that, from any other member
// that holds it (GET /v1/cluster/artifacts/{d}, with the shared token),
// verified by digest as an upload is (controller.Uploads.PutArtifact).
// Fetches are serialised, so a deploy's request and the periodic round
// never copy one artifact twice.
func (s *Server) fetchArtifact(ctx context.Context, d string) error {
	s.cl.arts.store.Lock()
	defer s.cl.arts.store.Unlock()
	if s.arts.Has(d) {
		return nil
	}
	members, err := s.st.Members()
	if err != nil {
		return err
	}
	leader, _ := s.cl.node.Leader()
	self := s.cl.node.ID()
	members = slices.DeleteFunc(members, func(m api.ClusterMember) bool { return m.ID == self || m.AdminURL == "" })
	slices.SortStableFunc(members, func(a, b api.ClusterMember) int {
		switch {
		case a.ID == leader:
			return -1
		case b.ID == leader:
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	ctx, cancel := context.WithTimeout(ctx, artifactFetchTimeout)
	defer cancel()
	var errs []string
	for _, m := range members {
		err := s.fetchFrom(ctx, m, d)
		if err == nil {
			s.log.Info("artifact fetched from a peer", "digest", d, "server", m.ID)
			return nil
		}
		if !errors.Is(err, errNotHeld) {
			errs = append(errs, fmt.Sprintf("copy from %s: %v", m.ID, err))
		}
	}
	if len(errs) == 0 {
		return fmt.Errorf("no other server holds it (asked: %d)", len(members))
	}
	return errors.New(strings.Join(errs, "; "))
}

// fetchRelease makes this server hold artifact d and, for an image
// stored by layer, every layer artifact its index names (fetchArtifact
// each, the index first: its layers are known once it is held). The
// error names the artifact that could not be copied and what is still
// lacking.
func (s *Server) fetchRelease(ctx context.Context, d string) error {
	if err := s.fetchArtifact(ctx, d); err != nil {
		return fmt.Errorf("artifact %s: %w", d, err)
	}
	lacks, err := s.arts.Missing(d)
	if err != nil {
		return err
	}
	for i, l := range lacks {
		if err := s.fetchArtifact(ctx, l); err != nil {
			return fmt.Errorf("layer %s of image %s (lacking %d of its layers): %w", l, d, len(lacks)-i, err)
		}
	}
	return nil
}

// errNotHeld: the peer asked does not hold the artifact.
var errNotHeld = errors.New("not held there")

// fetchFrom copies artifact d from member m's own store; errNotHeld
// when m does not hold it.
func (s *Server) fetchFrom(ctx context.Context, m api.ClusterMember, d string) error {
	resp, err := s.peerCall(ctx, http.MethodGet, m, d)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return errNotHeld
	}
	if resp.StatusCode != http.StatusOK {
		return peerError(resp)
	}
	_, err = s.uploads.PutArtifact(ctx, d, resp.Body)
	return err
}

// peerCall sends method /v1/cluster/artifacts/{d} to member m's admin
// API, with the shared token, over the cluster's TLS.
func (s *Server) peerCall(ctx context.Context, method string, m api.ClusterMember, d string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, m.AdminURL+"/v1/cluster/artifacts/"+d, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	return (&http.Client{Transport: s.cl.proxy}).Do(req)
}

// peerError is a peer's refusal: its status and the message of its
// error body.
func peerError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	var eb api.ErrorBody
	if json.Unmarshal(body, &eb) == nil && eb.Error != "" {
		return fmt.Errorf("%s: %s", resp.Status, eb.Error)
	}
	return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
}
