package pool

import (
	"net/http"
	"strings"
	"time"
)

// Key is what a pick depends on besides the pool's state: the sticky
// inputs of one request. The pool keeps none of its strings past Pick, so
// they may view a buffer the caller reuses afterwards.
type Key struct {
	// Path is the request's URL path (for SockJS session URLs).
	Path string
	// Cookie is the value of the pool's sticky cookie (CookieName) in the
	// request, "" when it has none.
	Cookie string
	// TLS reports a TLS client connection: a new pin cookie is Secure.
	TLS bool
}

// RequestKey returns the Key of r for p. It does not allocate.
func (p *Pool) RequestKey(r *http.Request) Key {
	k := Key{TLS: r.TLS != nil}
	if r.URL != nil {
		k.Path = r.URL.Path
	}
	if p.cookie != "" {
		for _, line := range r.Header["Cookie"] {
			if v, ok := CookieValue(line, p.cookie); ok {
				k.Cookie = v
				break
			}
		}
	}
	return k
}

// CookieName returns the name of the pool's sticky cookie, "" when cookie
// stickiness is off.
func (p *Pool) CookieName() string { return p.cookie }

// CookieValue returns the value of the first cookie named name in one
// Cookie header line ("a=1; b=2"), as net/http's Request.Cookie reads it:
// surrounding double quotes are removed, and a value with a byte a cookie
// value may not hold is skipped. It does not allocate; the value is a
// substring of line.
func CookieValue(line, name string) (string, bool) {
	for len(line) > 0 {
		var part string
		part, line, _ = strings.Cut(line, ";")
		part = strings.Trim(part, " \t\r\n")
		n, v, _ := strings.Cut(part, "=")
		if strings.Trim(n, " \t\r\n") != name {
			continue
		}
		if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		if validCookieValue(v) {
			return v, true
		}
	}
	return "", false
}

func validCookieValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; b < 0x20 || b >= 0x7f || b == '"' || b == ';' || b == '\\' {
			return false
		}
	}
	return true
}

// Pick chooses a target for the request whose sticky inputs are k,
// skipping the targets in tried (the ones already attempted for this
// request, for retries). It does not call Begin. k may be nil, which
// disables stickiness for this pick.
//
// The candidates are the healthy targets; when none is healthy the pool
// fails open to all non-draining targets and Choice.FailOpen is set.
// Draining targets are never picked. In order:
//
//  1. a SockJS session URL (Sticky.SockJSPrefixes) goes to its session's
//     rendezvous-hashed candidate;
//  2. a valid sticky cookie naming a candidate pins to it (Choice.Cookie is
//     set only to refresh a pin past half its TTL);
//  3. otherwise the algorithm picks, and with cookie stickiness
//     Choice.Cookie re-pins the client to the chosen target. Forged,
//     expired or stale cookies are ignored this way.
//
// It returns ErrNoTarget when no candidate remains. Pick takes no lock in
// the common case and does not allocate without cookie stickiness.
func (p *Pool) Pick(k *Key, tried []*Target) (Choice, error) {
	s := p.snap.Load()
	var now time.Time
	if s.wakeAt != 0 {
		now = p.now()
		if now.UnixNano() >= s.wakeAt {
			s = p.refresh(now)
		}
	}
	c := s.cands
	avail := len(c)
	if len(tried) > 0 {
		avail = 0
		for i := range c {
			if !contains(tried, c[i].t) {
				avail++
			}
		}
	}
	if avail == 0 {
		return Choice{}, ErrNoTarget
	}
	if k != nil && p.anyPick {
		if len(p.sockjs) > 0 {
			if sess, ok := SockJSSession(k.Path, p.sockjs); ok {
				return Choice{Target: p.pickHRW(c, tried, sess), FailOpen: s.failOpen}, nil
			}
		}
		if p.cookie != "" {
			if now.IsZero() {
				now = p.now()
			}
			return p.pickSticky(k, s, tried, avail, now), nil
		}
	}
	return Choice{Target: p.pickAlgo(s, tried, avail), FailOpen: s.failOpen}, nil
}

// pickSticky honours a valid cookie or picks and re-pins.
func (p *Pool) pickSticky(k *Key, s *snapshot, tried []*Target, avail int, now time.Time) Choice {
	if k.Cookie != "" {
		if id, exp, err := ParseCookie(p.secret, k.Cookie, now); err == nil {
			for i := range s.cands {
				t := s.cands[i].t
				if t.id != id || contains(tried, t) {
					continue
				}
				ch := Choice{Target: t, FailOpen: s.failOpen}
				if p.ttl > 0 && (exp.IsZero() || exp.Sub(now) < p.ttl/2) {
					ch.Cookie = p.newCookie(k.TLS, t, now)
				}
				return ch
			}
		}
	}
	t := p.pickAlgo(s, tried, avail)
	return Choice{Target: t, Cookie: p.newCookie(k.TLS, t, now), FailOpen: s.failOpen}
}

// newCookie returns the Set-Cookie that pins the client to t.
func (p *Pool) newCookie(secure bool, t *Target, now time.Time) *http.Cookie {
	var exp time.Time
	if p.ttl > 0 {
		exp = now.Add(p.ttl)
	}
	c := &http.Cookie{
		Name:     p.cookie,
		Value:    SignCookie(p.secret, t.id, exp),
		Path:     "/",
		HttpOnly: true,
		Secure:   secure,
		SameSite: http.SameSiteLaxMode,
	}
	if p.ttl > 0 {
		c.MaxAge = max(1, int(p.ttl/time.Second))
	}
	return c
}

// pickHRW returns the untried candidate with the highest rendezvous score
// for key; there is at least one.
func (p *Pool) pickHRW(c []entry, tried []*Target, key string) *Target {
	var best *Target
	var bestScore float64
	for i := range c {
		t := c[i].t
		if contains(tried, t) {
			continue
		}
		if sc := hrwScore(t.hrwSeed, key, c[i].weight); best == nil || sc > bestScore {
			best, bestScore = t, sc
		}
	}
	return best
}

// pickAlgo applies the pool's algorithm to the untried candidates; avail
// (at least one) is their count.
func (p *Pool) pickAlgo(s *snapshot, tried []*Target, avail int) *Target {
	c := s.cands
	if avail == 1 {
		for i := range c {
			if !contains(tried, c[i].t) {
				return c[i].t
			}
		}
	}
	switch p.algo {
	case LeastRequests:
		if t := p.least.pick(tried); t != nil {
			return t
		}
		// The heap already holds a newer snapshot's candidates, all
		// tried: pick from the snapshot this Pick loaded.
		return p.pickLeast(c, tried)
	case P2C:
		return p.pickP2C(c, tried, avail)
	}
	return p.pickRR(s, tried)
}

// pickRR walks the smooth weighted round-robin schedule from the shared
// position, skipping tried targets. Every candidate holds a slot, so one
// lap always finds an untried one.
func (p *Pool) pickRR(s *snapshot, tried []*Target) *Target {
	n := uint64(len(s.sched))
	for range n {
		t := s.cands[s.sched[(p.rr.Add(1)-1)%n]].t
		if !contains(tried, t) {
			return t
		}
	}
	return nil // unreachable: see the doc comment
}

// pickLeast returns the untried candidate in c with the fewest in-flight
// requests per unit of effective weight, breaking ties uniformly at random
// (reservoir sampling, so no allocation). It scans c: the pool's leastIndex
// is the fast way, this is the fallback for a pick that raced a rebuild.
func (p *Pool) pickLeast(c []entry, tried []*Target) *Target {
	var best *Target
	var bestIn, bestU int64
	ties := 0
	for i := range c {
		t := c[i].t
		if contains(tried, t) {
			continue
		}
		in, u := t.inflight.Load(), c[i].units
		if best == nil {
			best, bestIn, bestU, ties = t, in, u, 1
			continue
		}
		// in/u < bestIn/bestU without division.
		switch l, r := in*bestU, bestIn*u; {
		case l < r:
			best, bestIn, bestU, ties = t, in, u, 1
		case l == r:
			ties++
			if p.rand(ties) == 0 {
				best, bestIn, bestU = t, in, u
			}
		}
	}
	return best
}

// pickP2C draws two distinct untried candidates uniformly and returns the
// one with the lower EWMA(TTFB) x (in-flight+1) / effective weight.
func (p *Pool) pickP2C(c []entry, tried []*Target, avail int) *Target {
	ia := p.nthUntried(c, tried, p.rand(avail), -1)
	ib := p.nthUntried(c, tried, p.rand(avail-1), ia)
	a, b := &c[ia], &c[ib]
	la, lb := float64(a.t.ewma.Load()), float64(b.t.ewma.Load())
	switch {
	case la == 0 && lb == 0:
		la, lb = 1, 1
	case la == 0:
		la = lb
	case lb == 0:
		lb = la
	}
	ca := la * float64(a.t.inflight.Load()+1) / float64(a.units)
	cb := lb * float64(b.t.inflight.Load()+1) / float64(b.units)
	if cb < ca {
		return b.t
	}
	return a.t
}

// nthUntried returns the index in c of the n-th (from 0) candidate that is
// neither tried nor at index skip.
func (p *Pool) nthUntried(c []entry, tried []*Target, n, skip int) int {
	if len(tried) == 0 {
		if skip >= 0 && n >= skip {
			n++
		}
		return n
	}
	for i := range c {
		if i == skip || contains(tried, c[i].t) {
			continue
		}
		if n == 0 {
			return i
		}
		n--
	}
	return len(c) - 1 // unreachable when n < the untried count
}

func contains(ts []*Target, t *Target) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}
