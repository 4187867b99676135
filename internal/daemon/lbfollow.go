package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"reflect"
	"strconv"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/lb"
	"github.com/shoal-dev/shoal/internal/pki"
	"github.com/shoal-dev/shoal/internal/pool"
)

// A balancer node (`shoal lb` with lb.yaml's server section, issue 13)
// follows the configuration of a `shoal server` (server_lbstream.go): it
// joins the fleet like an agent (role lb), keeps its identity under its
// data directory and renews it, long-polls GET /v1/lb/config, applies
// each answer to its own balancer whole (routes and pool settings by one
// Reload, then the targets, added before any is removed) and writes what
// it applied to LBStateFile before it asks again. Its listeners, limits,
// access log and admin API are lb.yaml's. It checks the targets itself
// with each app's health check; the sticky keys are the server's, so a
// client pinned through one balancer stays pinned through another.
//
//	start: LBStateFile (if any) --serve at once--> poll --page--> apply --> save --> poll ...
//	                                                 | server unreachable or refusing
//	                                                 v
//	                        keep serving the last configuration; retry after 250 ms, doubling to 5 s
//	                        (a 503, the server asking to be called again, or a failed redirect to
//	                        the leader a follower named: 250 ms each time)

// Follow backoff while the server cannot be reached or refuses.
const (
	followMinBackoff = 250 * time.Millisecond
	followMaxBackoff = 5 * time.Second
)

// lbFollower is the following side of a balancer node.
type lbFollower struct {
	srv     *config.LBServer
	servers *serverList // srv.URLs: the one followed now, and the others
	log     *slog.Logger
	node    *pki.Node
	client  *http.Client
	state   string // LBStateFile's path
	b       *lb.Balancer

	// mu serialises applying a page and reloading lb.yaml; it guards
	// the fields below.
	mu      sync.Mutex
	epoch   string
	version uint64
	cfg     api.LBConfig // applied to b
	// served is the epoch of the configuration b serves (epoch is reset
	// to ask for a snapshot; served is not), and held the targets
	// ("pool addr") this node keeps healthy against the verdicts of a
	// new epoch's snapshot (see keepVerdicts).
	served string
	held   map[string]bool
}

// openFollower loads (or joins for) the node's identity and reads the
// last applied configuration, which the caller builds its balancer from
// (initialConfig).
func openFollower(ctx context.Context, srv *config.LBServer, file string, log *slog.Logger) (*lbFollower, error) {
	if err := prepareDataDir(srv.DataDir, log); err != nil {
		return nil, err
	}
	servers, err := openServerList(srv.URLs, filepath.Join(srv.DataDir, ServersFile))
	if err != nil {
		return nil, err
	}
	f := &lbFollower{srv: srv, servers: servers, log: log, state: filepath.Join(srv.DataDir, LBStateFile), cfg: normalLBConfig(api.LBConfig{})}
	st, cfg, found, err := loadLBState(f.state)
	if err != nil {
		return nil, err
	}
	if found {
		f.epoch, f.served, f.version, f.cfg = st.Epoch, st.Epoch, st.Version, cfg
		log.Info("serving the last configuration applied until the server answers", "file", f.state,
			"version", st.Version, "saved", st.Saved, "routes", len(cfg.Routes), "pools", len(cfg.Pools))
	}
	f.node, err = nodeIdentity(ctx, nodeJoin{
		Dir: filepath.Join(srv.DataDir, "pki"), Servers: srv.URLs, Name: srv.Name, TokenFile: srv.JoinTokenFile,
		TokenKey: "server.join_token_file of " + file,
		How:      "write a token from `shoal join-token --role lb` on the server into it",
	}, log)
	if err != nil {
		return nil, err
	}
	f.client = fleetClient(f.node.ClientTLSConfig(), nil, f.servers, f.log)
	return f, nil
}

// initialConfig fills base (lb.yaml's listeners and limits) with the
// routes and pools of the last applied configuration. Draining targets
// are left out: the server was taking them away.
func (f *lbFollower) initialConfig(base lb.Config) (lb.Config, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.withConfig(base, nil)
}

// withConfig is base with f.cfg's routes and pools, each pool with its
// in-service targets, and the draining ones that b still has (nil b: none)
// so that a Reload does not remove them before they are drained.
func (f *lbFollower) withConfig(base lb.Config, b *lb.Balancer) (lb.Config, error) {
	base.Routes = lbRoutesOf(f.cfg)
	base.Pools = nil
	for _, p := range f.cfg.Pools {
		pc, err := lbPoolConfigOf(p)
		if err != nil {
			return lb.Config{}, err
		}
		var have map[string]string // address -> state on b
		if b != nil {
			have = map[string]string{}
			if bp, ok := b.Pool(p.Name); ok {
				for _, ts := range bp.Status().Targets {
					have[ts.Addr] = ts.State
				}
			}
		}
		for _, t := range p.Targets {
			state, ok := have[t.Addr]
			if t.State != api.LBInService && !ok {
				continue
			}
			// A pool that the Reload rebuilds (its settings changed)
			// starts from these specs: a target b serves healthy stays
			// healthy whatever the server's verdict, so that a rebuild
			// never leaves the pool without the targets it served.
			healthy := t.Healthy || state == pool.StateHealthy.String()
			pc.Targets = append(pc.Targets, pool.TargetSpec{Addr: t.Addr, Weight: t.Weight, Unhealthy: !healthy})
		}
		base.Pools = append(base.Pools, pc)
	}
	return base, nil
}

// Following reports where the node stands in the server's numbering.
func (f *lbFollower) Following() (epoch string, version uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.epoch, f.version
}

// run follows the server until ctx ends, renewing the node's certificate
// meanwhile. Nothing it meets ends it: while the server cannot be reached
// or refuses, the balancer serves the last configuration and the node
// tries again.
func (f *lbFollower) run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := &pki.Renewer{Node: f.node, ServerURLs: f.srv.URLs, Logger: f.log}
		if err := r.Run(ctx); err != nil {
			// Static stability: an expired certificate stops the
			// following, not the serving.
			f.log.Error("node certificate not renewed: the balancer serves its last configuration; join again (remove the pki directory, set server.join_token_file)",
				"dir", filepath.Join(f.srv.DataDir, "pki"), "error", err)
		}
	}()
	defer wg.Wait()
	f.followServers(ctx)
	return nil
}

// followServers follows the current server, moving to the next one when
// it fails (fleetconn.go bounds how long a silent one holds a call),
// until ctx ends.
func (f *lbFollower) followServers(ctx context.Context) {
	defer f.client.CloseIdleConnections()
	var wait time.Duration // 0: nothing failed since the last success
	failing := false
	for ctx.Err() == nil {
		u := f.servers.current()
		err := f.follow(ctx, u)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			// The next server, if any, at once: a server that is down or
			// cut off must not stop the following while another can lead
			// the node to the leader (503s included: a server that knows
			// no leader may be the one cut off). The backoff grows only
			// once every server failed in a row.
			round := f.servers.failed(u)
			if round {
				wait = retryWait(wait, followMinBackoff, followMaxBackoff, err)
			}
			if !failing {
				f.log.Warn("cannot follow the server: serving the last configuration, trying again", "server", u, "next", f.servers.current(), "error", err)
			} else {
				f.log.Debug("cannot follow the server", "server", u, "next", f.servers.current(), "retry_in", wait.String(), "error", err)
			}
			failing = true
			if !round {
				continue
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		if failing {
			f.log.Info("following the server again", "server", u)
		}
		wait, failing = 0, false
	}
}

// follow asks the server once and applies its answer. Before the next
// call, which tells the server the answer is applied, it waits until the
// targets the answer drained or removed are idle here (see idle): the
// server stops an instance only after every node has applied its drain
// (lbStream.awaitDrain), so a request this node has in flight to it
// finishes first.
func (f *lbFollower) follow(ctx context.Context, server string) error {
	epoch, after := f.Following()
	page, err := f.poll(ctx, server, epoch, after)
	if err != nil {
		return err
	}
	drains, err := f.applyPage(server, page)
	if err != nil {
		return err
	}
	drains.wait(ctx, f.log)
	return nil
}

// poll is one GET /v1/lb/config of server.
func (f *lbFollower) poll(ctx context.Context, server, epoch string, after uint64) (api.LBConfigPage, error) {
	rctx, cancel := context.WithTimeout(ctx, lbPollWait+15*time.Second)
	defer cancel()
	q := url.Values{"epoch": {epoch}, "after": {strconv.FormatUint(after, 10)}}
	u := server + "/v1/lb/config?" + q.Encode()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, u, nil)
	if err != nil {
		return api.LBConfigPage{}, err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return api.LBConfigPage{}, redirectFailed(server, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return api.LBConfigPage{}, answerError(resp)
	}
	var p api.LBConfigPage
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&p); err != nil {
		return api.LBConfigPage{}, fmt.Errorf("GET %s/v1/lb/config: %w", server, err)
	}
	return p, nil
}

// applyPage applies a page whole: the configuration it leads to is built
// first, from the snapshot or from the current one and every change; a
// page that cannot be applied changes nothing, and the next call asks for
// a snapshot.
func (f *lbFollower) applyPage(server string, p api.LBConfigPage) (nodeDrains, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var next api.LBConfig
	if p.Snapshot != nil {
		next = normalLBConfig(*p.Snapshot)
	} else {
		if p.Epoch != f.epoch {
			was := f.epoch
			f.epoch = ""
			return nil, fmt.Errorf("changes of server run %s while following run %s: asking for a snapshot", p.Epoch, was)
		}
		if len(p.Changes) == 0 && p.Version == f.version {
			return nil, nil // no change: the wait ended
		}
		next = f.cfg
		v := f.version
		for _, ch := range p.Changes {
			if ch.Version != v+1 {
				f.epoch = ""
				return nil, fmt.Errorf("change %d after version %d: asking for a snapshot", ch.Version, v)
			}
			if err := applyLBChange(&next, ch); err != nil {
				f.epoch = ""
				return nil, fmt.Errorf("%w: asking for a snapshot", err)
			}
			v = ch.Version
		}
		if v != p.Version {
			f.epoch = ""
			return nil, fmt.Errorf("changes end at %d, the page says %d: asking for a snapshot", v, p.Version)
		}
		next = normalLBConfig(next)
	}
	if p.Snapshot != nil && p.Epoch != f.served {
		f.keepVerdicts(next)
	}
	for _, ch := range p.Changes {
		f.releaseVerdict(ch)
	}
	drains, err := f.applyLocked(next)
	if err != nil {
		f.epoch = ""
		return nil, err
	}
	f.epoch, f.served, f.version = p.Epoch, p.Epoch, p.Version
	if err := saveLBState(f.state, server, f.epoch, f.version, f.cfg); err != nil {
		// The balancer serves it; the next start would serve an older one.
		f.log.Error("balancer configuration applied but not saved", "file", f.state, "version", f.version, "error", err)
		return drains, err
	}
	level := slog.LevelDebug
	if p.Snapshot != nil {
		level = slog.LevelInfo
	}
	f.log.Log(context.Background(), level, "balancer configuration applied", "server", server, "epoch", f.epoch,
		"version", f.version, "changes", len(p.Changes), "snapshot", p.Snapshot != nil, "routes", len(next.Routes), "pools", len(next.Pools))
	return drains, nil
}

// applyLocked makes the balancer serve next: the certificates and
// challenges swap in whole (lb.Balancer.SetCertificates, SetChallenges);
// routes and pool settings
// swap in one Reload when they changed (pools whose settings stay keep
// their targets and connections), then each pool's targets follow with
// pool operations, new ones added before gone ones are removed. It
// returns the drains it started (syncTargetsLocked).
func (f *lbFollower) applyLocked(next api.LBConfig) (nodeDrains, error) {
	prev := f.cfg
	if !reflect.DeepEqual(prev.Certificates, next.Certificates) {
		// First: a set that does not load refuses the page before
		// anything of it is applied (the balancer keeps serving the last
		// good set; the next call asks for a snapshot).
		if err := f.b.SetCertificates(managedCertsOf(next.Certificates)); err != nil {
			return nil, fmt.Errorf("apply the server's certificates: %w", err)
		}
	}
	if structuralChange(prev, next) {
		f.cfg = next
		cfg, err := f.withConfig(f.b.Config(), f.b)
		if err == nil {
			err = f.b.Reload(cfg)
		}
		if err != nil {
			f.cfg = prev
			return nil, fmt.Errorf("apply the server's configuration: %w", err)
		}
	}
	if !reflect.DeepEqual(prev.Challenges, next.Challenges) {
		f.b.SetChallenges(challengesOf(next.Challenges))
	}
	f.cfg = next
	return f.syncTargetsLocked(prev), nil
}

// reload swaps in base (lb.yaml as reloaded: listeners, limits, access
// log) with the followed routes and pools.
func (f *lbFollower) reload(base lb.Config) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	cfg, err := f.withConfig(base, f.b)
	if err != nil {
		return err
	}
	if err := f.b.Reload(cfg); err != nil {
		return err
	}
	f.syncTargetsLocked(f.cfg)
	return nil
}

// structuralChange reports whether the routes or a pool's settings (or
// the set of pools) differ.
func structuralChange(a, b api.LBConfig) bool {
	if !reflect.DeepEqual(a.Routes, b.Routes) || len(a.Pools) != len(b.Pools) {
		return true
	}
	for i := range a.Pools {
		if !reflect.DeepEqual(settings(a.Pools[i]), settings(b.Pools[i])) {
			return true
		}
	}
	return false
}

// syncTargetsLocked brings each pool's members to f.cfg: in-service
// targets added (healthy when the server's verdict was, else awaiting
// this node's check; a pool without a check follows the server's
// verdicts, except a target held by keepVerdicts) and reweighed,
// server-drained ones drained, a target the server undrained (draining
// in prev) undrained, and the targets the server no longer has removed
// (drained, then deleted), in that order. It returns the drains and
// removals it started.
func (f *lbFollower) syncTargetsLocked(prev api.LBConfig) nodeDrains {
	var drains nodeDrains
	was := map[string]api.LBTargetState{}
	for _, p := range prev.Pools {
		for _, t := range p.Targets {
			was[p.Name+" "+t.Addr] = t.State
		}
	}
	for _, p := range f.cfg.Pools {
		bp, ok := f.b.Pool(p.Name)
		if !ok {
			continue
		}
		have := map[string]pool.TargetStatus{}
		for _, ts := range bp.Status().Targets {
			have[ts.Addr] = ts
		}
		warn := func(what, addr string, err error) {
			if err != nil && !errors.Is(err, pool.ErrNotFound) {
				f.log.Warn("follow the server: "+what, "pool", p.Name, "target", addr, "error", err)
			}
		}
		for _, t := range p.Targets {
			cur, ok := have[t.Addr]
			switch {
			case t.State == api.LBDraining:
				if ok && cur.State != pool.StateDraining.String() {
					idle, err := f.b.DrainTarget(p.Name, t.Addr, 0)
					warn("drain target", t.Addr, err)
					drains.add(p, t.Addr, idle)
				}
				continue
			case !ok:
				warn("add target", t.Addr, f.b.AddTarget(p.Name, pool.TargetSpec{Addr: t.Addr, Weight: t.Weight, Unhealthy: !t.Healthy}))
				continue
			case cur.State == pool.StateDraining.String() && was[p.Name+" "+t.Addr] == api.LBDraining:
				warn("undrain target", t.Addr, f.b.UndrainTarget(p.Name, t.Addr))
			}
			if cur.Weight != max(t.Weight, 1) {
				warn("set weight", t.Addr, bp.SetWeight(t.Addr, t.Weight))
			}
			if p.Health == nil && (t.Healthy || !f.held[p.Name+" "+t.Addr]) {
				warn("set health", t.Addr, bp.SetHealth(t.Addr, t.Healthy, "the server's verdict"))
			}
		}
		want := map[string]bool{}
		for _, t := range p.Targets {
			want[t.Addr] = true
		}
		for addr := range have {
			if !want[addr] {
				done, err := f.b.RemoveTarget(p.Name, addr)
				warn("remove target", addr, err)
				drains.add(p, addr, done)
			}
		}
	}
	return drains
}
