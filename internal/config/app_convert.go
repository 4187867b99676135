package config

import (
	"github.com/shoal-dev/shoal/internal/health"
	"github.com/shoal-dev/shoal/internal/pool"
)

// Spec returns the check as a health.Spec. The boot grace is not part of a
// Spec: pass Grace to the checker's options.
func (h AppHealth) Spec() health.Spec {
	var st []health.StatusRange
	for _, r := range h.Statuses.Ranges() {
		st = append(st, health.StatusRange{Min: r[0], Max: r[1]})
	}
	return health.Spec{
		Path:               h.Path,
		Host:               h.Host,
		Interval:           h.Interval.D(),
		Timeout:            h.Timeout.D(),
		HealthyThreshold:   h.HealthyThreshold,
		UnhealthyThreshold: h.UnhealthyThreshold,
		Statuses:           st,
	}
}

// PoolAlgorithm returns balancer.algorithm as a pool.Algorithm. The name
// was validated by Load, so this never fails on a loaded App; an unknown
// name gives RoundRobin.
func (b AppBalancer) PoolAlgorithm() pool.Algorithm {
	a, err := pool.ParseAlgorithm(b.Algorithm)
	if err != nil {
		return pool.RoundRobin
	}
	return a
}

// PoolSticky returns balancer.sticky as a pool.Sticky signed with the key
// of sticky.secret_file when it names one, else with secret (at least 16
// bytes; shoal up keeps one in the store so cookies survive restarts). No
// sticky section gives the zero value (off).
func (b AppBalancer) PoolSticky(secret []byte) pool.Sticky {
	if b.Sticky == nil {
		return pool.Sticky{}
	}
	if key := b.Sticky.Secret(); key != nil {
		secret = key
	}
	return pool.Sticky{
		Cookie:         b.Sticky.Cookie,
		TTL:            b.Sticky.TTL.D(),
		Secret:         secret,
		SockJSPrefixes: append([]string(nil), b.Sticky.SockJSPrefixes...),
	}
}
