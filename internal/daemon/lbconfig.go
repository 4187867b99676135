package daemon

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/health"
	"github.com/shoal-dev/shoal/internal/lb"
	"github.com/shoal-dev/shoal/internal/pool"
)

// The followed balancer configuration (api.LBConfig) and the balancer's
// own types, one function each way: the server derives it from its
// balancer (lbConfigOf), a balancer node builds its balancer from it
// (lbRoutesOf, lbPoolConfigOf). diffLBConfig and applyLBChange are each
// other's inverse: applying the changes of diff(a, b) to a gives b.

// lbConfigOf is the configuration of the balancer whose routes and pool
// settings are cfg: each pool's members (targets: its Status, nil for a
// pool that is gone meanwhile) and the check a node runs on them
// (check: nil for none).
func lbConfigOf(cfg lb.Config, targets func(pool string) []pool.TargetStatus, check func(pool string) *health.Spec) api.LBConfig {
	out := api.LBConfig{Routes: []api.LBRoute{}, Pools: []api.LBPool{}}
	for _, r := range cfg.Routes {
		out.Routes = append(out.Routes, api.LBRoute{Name: r.Name, Host: r.Host, PathPrefix: r.PathPrefix, Pool: r.Pool,
			LongLived: r.LongLived, LongLivedPaths: slices.Clone(r.LongLivedPaths)})
	}
	for _, pc := range cfg.Pools {
		p := lbPoolOf(pc, check(pc.Name))
		p.Targets = []api.LBTarget{}
		for _, ts := range targets(pc.Name) {
			t := api.LBTarget{Addr: ts.Addr, Weight: ts.Weight, State: api.LBInService}
			switch ts.State {
			case pool.StateDraining.String():
				t.State = api.LBDraining
			case pool.StateHealthy.String(), pool.StateEjected.String():
				// An ejection is this balancer's own passive verdict,
				// which every node forms for itself.
				t.Healthy = true
			}
			p.Targets = append(p.Targets, t)
		}
		slices.SortFunc(p.Targets, func(a, b api.LBTarget) int { return strings.Compare(a.Addr, b.Addr) })
		out.Pools = append(out.Pools, p)
	}
	slices.SortFunc(out.Pools, func(a, b api.LBPool) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func ms(d time.Duration) int64   { return d.Milliseconds() }
func dur(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }

// lbPoolOf is the settings of pc (no targets) with the check h.
func lbPoolOf(pc lb.PoolConfig, h *health.Spec) api.LBPool {
	p := api.LBPool{Name: pc.Name, Algorithm: pc.Algorithm.String(), SlowStartMS: ms(pc.SlowStart),
		DrainTimeoutMS: ms(pc.DrainTimeout), Retries: pc.Retries, TryTimeoutMS: ms(pc.TryTimeout),
		ConnectTimeoutMS: ms(pc.ConnectTimeout)}
	if pc.Protocol != lb.ProtocolHTTP1 {
		p.Protocol = pc.Protocol.String()
	}
	if s := pc.Sticky; s.Cookie != "" || len(s.SockJSPrefixes) > 0 {
		p.Sticky = &api.LBSticky{Cookie: s.Cookie, TTLMS: ms(s.TTL), Secret: slices.Clone(s.Secret),
			SockJSPrefixes: slices.Clone(s.SockJSPrefixes)}
	}
	if o := pc.Outlier; o != (pool.Outlier{}) {
		p.Outlier = &api.LBOutlier{ConsecutiveFailures: o.ConsecutiveFailures, BaseEjectionMS: ms(o.BaseEjection),
			MaxEjectionMS: ms(o.MaxEjection), MaxEjectedPercent: o.MaxEjectedPercent}
	}
	if h != nil {
		lh := &api.LBHealth{Path: h.Path, Host: h.Host, IntervalMS: ms(h.Interval), TimeoutMS: ms(h.Timeout),
			HealthyThreshold: h.HealthyThreshold, UnhealthyThreshold: h.UnhealthyThreshold, Jitter: h.Jitter}
		for _, r := range h.Statuses {
			lh.Statuses = append(lh.Statuses, [2]int{r.Min, r.Max})
		}
		p.Health = lh
	}
	return p
}

// lbRoutesOf is the route table of c.
func lbRoutesOf(c api.LBConfig) []lb.Route {
	out := make([]lb.Route, 0, len(c.Routes))
	for _, r := range c.Routes {
		out = append(out, lb.Route{Name: r.Name, Host: r.Host, PathPrefix: r.PathPrefix, Pool: r.Pool,
			LongLived: r.LongLived, LongLivedPaths: slices.Clone(r.LongLivedPaths)})
	}
	return out
}

// lbPoolConfigOf is the balancer pool of p, without targets (a node adds
// them one by one). An algorithm it does not know is an error naming the
// pool (a server newer than the node).
func lbPoolConfigOf(p api.LBPool) (lb.PoolConfig, error) {
	algo, err := pool.ParseAlgorithm(p.Algorithm)
	if err != nil {
		return lb.PoolConfig{}, fmt.Errorf("pool %s: %w", p.Name, err)
	}
	proto, err := lb.ParseProtocol(p.Protocol)
	if err != nil {
		return lb.PoolConfig{}, fmt.Errorf("pool %s: %w", p.Name, err)
	}
	pc := lb.PoolConfig{Name: p.Name, Algorithm: algo, SlowStart: dur(p.SlowStartMS), DrainTimeout: dur(p.DrainTimeoutMS),
		Retries: p.Retries, TryTimeout: dur(p.TryTimeoutMS), ConnectTimeout: dur(p.ConnectTimeoutMS), Protocol: proto}
	if s := p.Sticky; s != nil {
		pc.Sticky = pool.Sticky{Cookie: s.Cookie, TTL: dur(s.TTLMS), Secret: slices.Clone(s.Secret),
			SockJSPrefixes: slices.Clone(s.SockJSPrefixes)}
	}
	if o := p.Outlier; o != nil {
		pc.Outlier = pool.Outlier{ConsecutiveFailures: o.ConsecutiveFailures, BaseEjection: dur(o.BaseEjectionMS),
			MaxEjection: dur(o.MaxEjectionMS), MaxEjectedPercent: o.MaxEjectedPercent}
	}
	if h := p.Health; h != nil {
		spec := &health.Spec{Path: h.Path, Host: h.Host, Interval: dur(h.IntervalMS), Timeout: dur(h.TimeoutMS),
			HealthyThreshold: h.HealthyThreshold, UnhealthyThreshold: h.UnhealthyThreshold, Jitter: h.Jitter}
		for _, r := range h.Statuses {
			spec.Statuses = append(spec.Statuses, health.StatusRange{Min: r[0], Max: r[1]})
		}
		pc.Health = spec
	}
	return pc, nil
}

// settings is p without its targets.
func settings(p api.LBPool) api.LBPool {
	p.Targets = nil
	return p
}

// diffLBConfig returns the changes that turn from into to, without
// versions, in an order that keeps every step whole: pools are set before
// the routes that may name them, and removed after the routes that named
// them; targets are set before others are removed.
func diffLBConfig(from, to api.LBConfig) []api.LBChange {
	var out []api.LBChange
	old := map[string]api.LBPool{}
	for _, p := range from.Pools {
		old[p.Name] = p
	}
	now := map[string]bool{}
	for _, p := range to.Pools {
		now[p.Name] = true
		if o, ok := old[p.Name]; !ok || !reflect.DeepEqual(settings(o), settings(p)) {
			s := settings(p)
			out = append(out, api.LBChange{Kind: api.LBPoolSet, Pool: &s})
		}
	}
	if !reflect.DeepEqual(from.Routes, to.Routes) {
		out = append(out, api.LBChange{Kind: api.LBRoutesSet, Routes: slices.Clone(to.Routes)})
	}
	if !reflect.DeepEqual(from.Challenges, to.Challenges) {
		out = append(out, api.LBChange{Kind: api.LBChallengesSet, Challenges: slices.Clone(to.Challenges)})
	}
	if !reflect.DeepEqual(from.Certificates, to.Certificates) {
		out = append(out, api.LBChange{Kind: api.LBCertsSet, Certificates: slices.Clone(to.Certificates)})
	}
	var removed []api.LBChange
	for _, p := range to.Pools {
		had := map[string]api.LBTarget{}
		for _, t := range old[p.Name].Targets {
			had[t.Addr] = t
		}
		for _, t := range p.Targets {
			if o, ok := had[t.Addr]; !ok || o != t {
				out = append(out, api.LBChange{Kind: api.LBTargetSet, PoolName: p.Name, Target: &t})
			}
			delete(had, t.Addr)
		}
		for _, t := range old[p.Name].Targets {
			if _, gone := had[t.Addr]; gone {
				removed = append(removed, api.LBChange{Kind: api.LBTargetRemoved, PoolName: p.Name, Target: &api.LBTarget{Addr: t.Addr}})
			}
		}
	}
	out = append(out, removed...)
	for _, p := range from.Pools {
		if !now[p.Name] {
			out = append(out, api.LBChange{Kind: api.LBPoolRemoved, PoolName: p.Name})
		}
	}
	return out
}

// applyLBChange applies ch to c, keeping pools and targets sorted. A
// change it cannot apply (an unknown kind, a target of a pool c does not
// have) is an error naming the change; c is then left as it was.
func applyLBChange(c *api.LBConfig, ch api.LBChange) error {
	find := func(name string) int {
		i, ok := slices.BinarySearchFunc(c.Pools, name, func(p api.LBPool, n string) int { return strings.Compare(p.Name, n) })
		if !ok {
			return -1
		}
		return i
	}
	switch ch.Kind {
	case api.LBRoutesSet:
		c.Routes = slices.Clone(ch.Routes)
		if c.Routes == nil {
			c.Routes = []api.LBRoute{}
		}
	case api.LBPoolSet:
		if ch.Pool == nil || ch.Pool.Name == "" {
			return fmt.Errorf("change %d (%s): no pool", ch.Version, ch.Kind)
		}
		p := settings(*ch.Pool)
		if i := find(p.Name); i >= 0 {
			p.Targets = c.Pools[i].Targets
			c.Pools = slices.Clone(c.Pools)
			c.Pools[i] = p
		} else {
			p.Targets = []api.LBTarget{}
			c.Pools = append(slices.Clone(c.Pools), p)
			slices.SortFunc(c.Pools, func(a, b api.LBPool) int { return strings.Compare(a.Name, b.Name) })
		}
	case api.LBPoolRemoved:
		if i := find(ch.PoolName); i >= 0 {
			c.Pools = slices.Delete(slices.Clone(c.Pools), i, i+1)
		}
	case api.LBTargetSet, api.LBTargetRemoved:
		i := find(ch.PoolName)
		if i < 0 || ch.Target == nil || ch.Target.Addr == "" {
			return fmt.Errorf("change %d (%s): pool %q with a target: the configuration has no such pool", ch.Version, ch.Kind, ch.PoolName)
		}
		ts := slices.Clone(c.Pools[i].Targets)
		j, found := slices.BinarySearchFunc(ts, ch.Target.Addr, func(t api.LBTarget, a string) int { return cmp.Compare(t.Addr, a) })
		switch {
		case ch.Kind == api.LBTargetRemoved && found:
			ts = slices.Delete(ts, j, j+1)
		case ch.Kind == api.LBTargetSet && found:
			ts[j] = *ch.Target
		case ch.Kind == api.LBTargetSet:
			ts = slices.Insert(ts, j, *ch.Target)
		}
		c.Pools = slices.Clone(c.Pools)
		c.Pools[i].Targets = ts
	case api.LBCertsSet:
		c.Certificates = nilIfEmpty(slices.Clone(ch.Certificates))
	case api.LBChallengesSet:
		c.Challenges = nilIfEmpty(slices.Clone(ch.Challenges))
	default:
		return fmt.Errorf("change %d: unknown kind %q (a server newer than this node?)", ch.Version, ch.Kind)
	}
	return nil
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

// lbCertsOf is the balancer's managed certificates on the wire; nil for
// none.
func lbCertsOf(certs []lb.ManagedCert) []api.LBCertificate {
	var out []api.LBCertificate
	for _, c := range certs {
		out = append(out, api.LBCertificate{Names: slices.Clone(c.Names), CertPEM: string(c.CertPEM), KeyPEM: string(c.KeyPEM)})
	}
	return out
}

// managedCertsOf is the inverse of lbCertsOf.
func managedCertsOf(certs []api.LBCertificate) []lb.ManagedCert {
	var out []lb.ManagedCert
	for _, c := range certs {
		out = append(out, lb.ManagedCert{Names: slices.Clone(c.Names), CertPEM: []byte(c.CertPEM), KeyPEM: []byte(c.KeyPEM)})
	}
	return out
}

// lbChallengesOf is a token set on the wire, sorted by token; nil for
// none.
func lbChallengesOf(tokens map[string]string) []api.LBChallenge {
	var out []api.LBChallenge
	for t, ka := range tokens {
		out = append(out, api.LBChallenge{Token: t, KeyAuth: ka})
	}
	slices.SortFunc(out, func(a, b api.LBChallenge) int { return strings.Compare(a.Token, b.Token) })
	return out
}

// challengesOf is the inverse of lbChallengesOf.
func challengesOf(cs []api.LBChallenge) map[string]string {
	out := map[string]string{}
	for _, c := range cs {
		out[c.Token] = c.KeyAuth
	}
	return out
}
