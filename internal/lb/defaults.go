package lb

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/internal/pool"
)

// Defaults applied by New and Reload to zero fields of Config.
const (
	DefaultRetryBudget   = 0.2
	DefaultMinRetries    = 3
	DefaultHeaderTimeout = 10 * time.Second
	DefaultClientIdle    = 60 * time.Second
	// DefaultUpstreamIdle is below Node.js's 5s keep-alive timeout (Meteor
	// runs on Node): a pooled connection the target may already have closed
	// would turn a non-idempotent request into a 502.
	DefaultUpstreamIdle   = 4 * time.Second
	DefaultMaxHeaderBytes = 64 << 10
	DefaultMaxRequestLine = 16 << 10
	DefaultMaxURIBytes    = 16 << 10
	// DefaultMaxIdlePerHost is above the requests in flight of a busy
	// HTTP/2 front (64 connections of 10 streams): below them a loop's
	// pool closes connections as the load dips and dials them again as
	// it rises. Idle ones close after UpstreamIdle anyway.
	DefaultMaxIdlePerHost  = 1024
	DefaultShutdownTimeout = 30 * time.Second
	DefaultRetries         = 2
	DefaultTryTimeout      = 30 * time.Second
	DefaultConnectTimeout  = 2 * time.Second
	DefaultDrainTimeout    = 30 * time.Second
)

// withDefaults returns a copy of c with defaults filled in. Slices are
// copied so that later changes by the caller do not reach the balancer.
func withDefaults(c Config) Config {
	c.Listeners = append([]Listener(nil), c.Listeners...)
	c.Routes = append([]Route(nil), c.Routes...)
	c.Pools = append([]PoolConfig(nil), c.Pools...)
	if c.RetryBudget == 0 {
		c.RetryBudget = DefaultRetryBudget
	}
	if c.MinRetries == 0 {
		c.MinRetries = DefaultMinRetries
	}
	l := &c.Limits
	setDur(&l.HeaderTimeout, DefaultHeaderTimeout)
	setDur(&l.ClientIdle, DefaultClientIdle)
	setDur(&l.UpstreamIdle, DefaultUpstreamIdle)
	setDur(&l.ShutdownTimeout, DefaultShutdownTimeout)
	if l.MaxHeaderBytes == 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	// Unset, the request line and URI limits are at most the head's.
	if l.MaxURIBytes == 0 {
		l.MaxURIBytes = min(DefaultMaxURIBytes, l.MaxHeaderBytes)
	}
	if l.MaxRequestLine == 0 {
		l.MaxRequestLine = min(DefaultMaxRequestLine, l.MaxHeaderBytes)
	}
	if l.MaxIdlePerHost == 0 {
		l.MaxIdlePerHost = DefaultMaxIdlePerHost
	}
	for i := range c.Routes {
		if c.Routes[i].PathPrefix == "" {
			c.Routes[i].PathPrefix = "/"
		}
	}
	for i := range c.Pools {
		c.Pools[i] = poolDefaults(c.Pools[i])
	}
	return c
}

func poolDefaults(p PoolConfig) PoolConfig {
	p.Targets = append([]pool.TargetSpec(nil), p.Targets...)
	switch {
	case p.Retries == 0:
		p.Retries = DefaultRetries
	case p.Retries < 0:
		p.Retries = 0
	}
	setDur(&p.TryTimeout, DefaultTryTimeout)
	setDur(&p.ConnectTimeout, DefaultConnectTimeout)
	setDur(&p.DrainTimeout, DefaultDrainTimeout)
	return p
}

func setDur(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

// validate reports every problem of a defaulted config at once, each
// prefixed with its field path.
func validate(c Config) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if len(c.Listeners) == 0 {
		bad("listeners: at least one listener is required")
	}
	lnames := map[string]bool{}
	for i, l := range c.Listeners {
		p := fmt.Sprintf("listeners[%d]", i)
		if l.Name == "" {
			bad("%s.name: required", p)
		} else if lnames[l.Name] {
			bad("%s.name: duplicate listener %q", p, l.Name)
		}
		lnames[l.Name] = true
		if _, _, err := net.SplitHostPort(l.Addr); err != nil {
			bad("%s.addr: %q is not host:port: %v", p, l.Addr, err)
		}
		for j, ct := range l.TLS {
			if ct.CertFile == "" || ct.KeyFile == "" {
				bad("%s.tls[%d]: cert_file and key_file are both required", p, j)
			}
		}
	}
	pnames := map[string]bool{}
	for i, pc := range c.Pools {
		p := fmt.Sprintf("pools[%d]", i)
		if pc.Name == "" {
			bad("%s.name: required", p)
		} else if pnames[pc.Name] {
			bad("%s.name: duplicate pool %q", p, pc.Name)
		}
		pnames[pc.Name] = true
		for _, err := range validatePool(pc) {
			bad("%s%w", p, err)
		}
	}
	rnames := map[string]bool{}
	type key struct{ host, prefix string }
	seen := map[key]string{}
	for i, r := range c.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		if r.Name == "" {
			bad("%s.name: required", p)
		} else if rnames[r.Name] {
			bad("%s.name: duplicate route %q", p, r.Name)
		}
		rnames[r.Name] = true
		if err := CheckHostPattern(r.Host); err != nil {
			bad("%s.host: %v", p, err)
		}
		if !strings.HasPrefix(r.PathPrefix, "/") {
			bad("%s.path_prefix: %q must start with /", p, r.PathPrefix)
		}
		if !pnames[r.Pool] {
			bad("%s.pool: unknown pool %q", p, r.Pool)
		}
		for j, lp := range r.LongLivedPaths {
			if !strings.HasPrefix(lp, "/") {
				bad("%s.long_lived_paths[%d]: %q must start with /", p, j, lp)
			}
		}
		for _, err := range checkCompression(r.Compression) {
			bad("%s.compression.%v", p, err)
		}
		for _, err := range checkCache(r.Cache) {
			bad("%s.cache.%v", p, err)
		}
		k := key{strings.ToLower(r.Host), r.PathPrefix}
		if other, ok := seen[k]; ok {
			bad("%s: same host and path prefix as route %q", p, other)
		}
		seen[k] = r.Name
	}
	for i, l := range c.Listeners {
		for _, rn := range l.Routes {
			if !rnames[rn] {
				bad("listeners[%d].routes: unknown route %q", i, rn)
			}
		}
	}
	lim := c.Limits
	if lim.HeaderTimeout < 0 || lim.ClientIdle < 0 || lim.UpstreamIdle < 0 || lim.WebSocketIdle < 0 || lim.ShutdownTimeout < 0 {
		bad("limits: durations must not be negative")
	}
	if lim.MaxHeaderBytes < 0 || lim.MaxURIBytes < 0 || lim.MaxBodyBytes < 0 || lim.MaxConns < 0 || lim.MaxIdlePerHost < 0 {
		bad("limits: sizes and counts must not be negative")
	}
	if lim.MaxURIBytes > lim.MaxHeaderBytes {
		bad("limits.max_uri_bytes: %d exceeds max_header_bytes %d", lim.MaxURIBytes, lim.MaxHeaderBytes)
	}
	if lim.MaxRequestLine < 0 || lim.MaxRequestLine > lim.MaxHeaderBytes {
		bad("limits.max_request_line: %d not in 0-max_header_bytes (%d)", lim.MaxRequestLine, lim.MaxHeaderBytes)
	}
	if lim.MaxHeaderBytes < MinMaxHeaderBytes {
		bad("limits.max_header_bytes: %d is less than the minimum %d", lim.MaxHeaderBytes, MinMaxHeaderBytes)
	}
	if c.RetryBudget < 0 || c.RetryBudget > 1 {
		bad("retry_budget: %v not in 0-1", c.RetryBudget)
	}
	if c.MinRetries < 0 {
		bad("min_retries: must not be negative")
	}
	if c.Maintenance != nil && c.Maintenance.RetryAfter < 0 {
		bad("maintenance.retry_after: must not be negative")
	}
	return errors.Join(errs...)
}

// validatePool returns the problems of one defaulted pool config; each
// error text starts with the field path below the pool (".targets[0]...").
func validatePool(pc PoolConfig) []error {
	var errs []error
	opts := poolOptions(pc, nil)
	if err := opts.Validate(); err != nil {
		errs = append(errs, fmt.Errorf(": %v", err))
	}
	addrs := map[string]bool{}
	for j, t := range pc.Targets {
		if _, _, err := net.SplitHostPort(t.Addr); err != nil {
			errs = append(errs, fmt.Errorf(".targets[%d].addr: %q is not host:port", j, t.Addr))
		}
		if addrs[t.Addr] {
			errs = append(errs, fmt.Errorf(".targets[%d].addr: duplicate target %q", j, t.Addr))
		}
		addrs[t.Addr] = true
		if t.Weight < 0 || t.Weight > pool.MaxWeight {
			errs = append(errs, fmt.Errorf(".targets[%d].weight: %d not in 0-%d", j, t.Weight, pool.MaxWeight))
		}
	}
	if pc.ConnectTimeout < 0 || pc.DrainTimeout < 0 || pc.SlowStart < 0 { // TryTimeout < 0 is off
		errs = append(errs, fmt.Errorf(": durations must not be negative"))
	}
	if pc.Health != nil {
		if err := pc.Health.Validate(); err != nil {
			errs = append(errs, fmt.Errorf(".health: %v", err))
		}
	}
	return append(errs, validatePoolTLS(pc)...)
}

// validatePoolTLS returns the problems of a pool's protocol and TLS
// settings, its files' included.
func validatePoolTLS(pc PoolConfig) []error {
	switch {
	case pc.TLS == nil && pc.Protocol == ProtocolH2:
		return []error{errors.New(".protocol: h2 is HTTP/2 over TLS and needs tls settings (h2c is HTTP/2 without TLS)")}
	case pc.TLS == nil:
		return nil
	case pc.Protocol == ProtocolH2C:
		return []error{errors.New(".protocol: h2c is HTTP/2 without TLS; with tls use h2")}
	}
	if err := pc.TLS.Check(); err != nil {
		var fe *TLSFileError
		if errors.As(err, &fe) {
			return []error{fmt.Errorf(".tls.%s: %w", fe.Field, err)}
		}
		return []error{fmt.Errorf(".tls: %w", err)}
	}
	return nil
}

// CheckHostPattern accepts what Route.Host takes: "", an exact host name
// or "*.suffix".
func CheckHostPattern(h string) error {
	if h == "" {
		return nil
	}
	name := h
	if strings.HasPrefix(h, "*.") {
		name = h[2:]
	}
	if name == "" || strings.ContainsAny(name, "*:/ ") || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
		return fmt.Errorf("%q is not a host name or *.domain wildcard", h)
	}
	return nil
}
