package config

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/internal/health"
	"github.com/shoal-dev/shoal/internal/lb"
	"github.com/shoal-dev/shoal/internal/pool"
)

// minStickySecret mirrors the pool's minimum HMAC key length.
const minStickySecret = 16

func (v *lbValidator) pool(path string, p poolDoc) lb.PoolConfig {
	d := v.d
	pc := lb.PoolConfig{
		Name:           p.Name,
		Algorithm:      p.Algorithm,
		SlowStart:      v.duration(path+".slow_start", p.SlowStart),
		DrainTimeout:   v.duration(path+".drain_timeout", p.DrainTimeout),
		TryTimeout:     v.timeoutOrOff(path+".try_timeout", p.TryTimeout),
		ConnectTimeout: v.duration(path+".connect_timeout", p.ConnectTimeout),
	}
	if proto, err := lb.ParseProtocol(p.Protocol); err != nil {
		d.errorf(path+".protocol", "%v", err)
	} else {
		pc.Protocol = proto
	}
	if t := p.TLS; t != nil {
		pc.TLS = v.poolTLS(path+".tls", t)
	}
	switch {
	case pc.TLS == nil && pc.Protocol == lb.ProtocolH2:
		d.errorf(path+".protocol", "h2 is HTTP/2 over TLS and needs a tls section (h2c is HTTP/2 without TLS)")
	case pc.TLS != nil && pc.Protocol == lb.ProtocolH2C:
		d.errorf(path+".protocol", "h2c is HTTP/2 without TLS; with tls use h2")
	}
	if r := p.Retries; r != nil {
		// In the file 0 means "no retries"; in lb.Config 0 means the
		// default and -1 means none.
		switch {
		case *r < 0 || *r > 10:
			d.errorf(path+".retries", "must be between 0 and 10, got %d", *r)
		case *r == 0:
			pc.Retries = -1
		default:
			pc.Retries = *r
		}
	}
	addrs := map[string]bool{}
	for i, t := range p.Targets {
		tp := fmt.Sprintf("%s.targets[%d]", path, i)
		if !v.hostPort(tp+".addr", t.Addr, false) {
			continue
		}
		if addrs[t.Addr] {
			d.errorf(tp+".addr", "duplicate target %q", t.Addr)
			continue
		}
		addrs[t.Addr] = true
		if t.Weight < 0 || t.Weight > pool.MaxWeight {
			d.errorf(tp+".weight", "must be between 1 and %d, got %d", pool.MaxWeight, t.Weight)
		}
		pc.Targets = append(pc.Targets, pool.TargetSpec{Addr: t.Addr, Weight: t.Weight})
	}
	if h := p.HealthCheck; h != nil {
		pc.Health = v.health(path+".health", h)
	}
	if s := p.Sticky; s != nil {
		pc.Sticky = v.sticky(path+".sticky", s)
	}
	pc.Outlier = v.outlier(path+".outlier", p.Outlier)
	return pc
}

// poolTLS reads a pool's tls section; its files are loaded now, so that
// an unreadable or damaged one is reported at its key.
func (v *lbValidator) poolTLS(path string, t *poolTLSDoc) *lb.TargetTLS {
	tt := &lb.TargetTLS{
		CAFile:             v.abs(t.CAFile),
		ServerName:         t.ServerName,
		CertFile:           v.abs(t.CertFile),
		KeyFile:            v.abs(t.KeyFile),
		InsecureSkipVerify: t.InsecureSkipVerify,
	}
	if strings.ContainsAny(t.ServerName, " /\r\n\t") {
		v.d.errorf(path+".server_name", "invalid server name %q", t.ServerName)
	}
	if err := tt.Check(); err != nil {
		var fe *lb.TLSFileError
		if errors.As(err, &fe) {
			v.d.errorf(path+"."+fe.Field, "%v", err)
		} else {
			v.d.errorf(path, "%v", err)
		}
	}
	return tt
}

func (v *lbValidator) sticky(path string, s *stickyDoc) pool.Sticky {
	d := v.d
	st := pool.Sticky{TTL: v.duration(path+".ttl", s.TTL), Cookie: s.Cookie}
	if s.Cookie != "" && !validCookieName(s.Cookie) {
		d.errorf(path+".cookie", "invalid cookie name %q", s.Cookie)
	}
	switch {
	case s.Cookie != "" && s.SecretFile == "":
		d.errorf(path+".secret_file", "is required with cookie: a file holding at least %d random bytes, the same on every balancer node (for example: head -c 32 /dev/urandom | base64 > sticky.key; chmod 600 sticky.key)", minStickySecret)
	case s.SecretFile != "":
		b, err := readStickySecret(v.abs(s.SecretFile), s.SecretFile)
		if err != nil {
			d.errorf(path+".secret_file", "%v", err)
		}
		st.Secret = b
	}
	for i, pre := range s.SockJSPrefixes {
		if !strings.HasPrefix(pre, "/") {
			d.errorf(fmt.Sprintf("%s.sockjs_prefixes[%d]", path, i), "must start with /, got %q", pre)
		}
		st.SockJSPrefixes = append(st.SockJSPrefixes, pre)
	}
	return st
}

// readStickySecret reads the cookie signing key of a sticky secret_file
// (lb.yaml and shoal.yaml alike) at path, named name in messages: the
// file's contents without surrounding whitespace, at least
// minStickySecret bytes. A short key is returned with its error.
func readStickySecret(path, name string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read sticky secret: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) < minStickySecret {
		return b, fmt.Errorf("secret in %s is %d bytes; at least %d are required", name, len(b), minStickySecret)
	}
	return b, nil
}

func (v *lbValidator) outlier(path string, o outlierDoc) pool.Outlier {
	out := pool.Outlier{
		ConsecutiveFailures: v.nonNegative(path+".consecutive_failures", o.ConsecutiveFailures),
		BaseEjection:        v.duration(path+".base_ejection", o.BaseEjection),
		MaxEjection:         v.duration(path+".max_ejection", o.MaxEjection),
		MaxEjectedPercent:   o.MaxEjectedPercent,
	}
	if o.MaxEjectedPercent < 0 || o.MaxEjectedPercent > 100 {
		v.d.errorf(path+".max_ejected_percent", "must be between 1 and 100, got %d", o.MaxEjectedPercent)
	}
	if out.MaxEjection > 0 && out.BaseEjection > out.MaxEjection {
		v.d.errorf(path+".max_ejection", "must be at least base_ejection (%v)", out.BaseEjection)
	}
	return out
}

func (v *lbValidator) health(path string, h *healthDoc) *health.Spec {
	d := v.d
	s := &health.Spec{
		Path:     h.Path,
		Host:     h.Host,
		Interval: v.duration(path+".interval", h.Interval),
		Timeout:  v.duration(path+".timeout", h.Timeout),
		Jitter:   h.Jitter,
	}
	if s.Path != "" && !strings.HasPrefix(s.Path, "/") {
		d.errorf(path+".path", "must start with /, got %q", s.Path)
	}
	if strings.ContainsAny(s.Host, " /\r\n\t") {
		d.errorf(path+".host", "invalid host %q", s.Host)
	}
	for _, th := range []struct {
		key string
		val *int
		dst *int
	}{
		{"healthy_threshold", h.HealthyThreshold, &s.HealthyThreshold},
		{"unhealthy_threshold", h.UnhealthyThreshold, &s.UnhealthyThreshold},
	} {
		if th.val == nil {
			continue
		}
		if *th.val < 1 {
			d.errorf(path+"."+th.key, "must be at least 1, got %d", *th.val)
		}
		*th.dst = *th.val
	}
	if h.Jitter < 0 || h.Jitter > 1 {
		d.errorf(path+".jitter", "must be between 0 and 1, got %v", h.Jitter)
	}
	def := s.WithDefaults()
	// A probe never overlaps the next one (the next starts an interval
	// after this one started), so a timeout equal to the interval is
	// fine, as in HAProxy (timeout check = inter).
	if def.Timeout > def.Interval {
		d.errorf(path+".timeout", "must be at most interval (%v), got %v", def.Interval, def.Timeout)
	}
	if d.has(path + ".statuses") {
		for _, r := range h.Statuses.Ranges() {
			s.Statuses = append(s.Statuses, health.StatusRange{Min: r[0], Max: r[1]})
		}
	}
	return s
}

// TimeoutOrOff is a timeout written with a unit ("30s"), or "off" (also
// 0) for none. Unset, the default applies.
type TimeoutOrOff time.Duration

// timeoutOff is the value of "off".
const timeoutOff = TimeoutOrOff(math.MinInt64)

// UnmarshalText implements encoding.TextUnmarshaler.
func (t *TimeoutOrOff) UnmarshalText(b []byte) error {
	if s := strings.TrimSpace(string(b)); s == "off" || s == "0" {
		*t = timeoutOff
		return nil
	}
	var d Duration
	if err := d.UnmarshalText(b); err != nil {
		return fmt.Errorf("%w, or off", err)
	}
	*t = TimeoutOrOff(d)
	return nil
}

// timeoutOrOff turns t into lb's convention: 0 for the default, -1 for
// off.
func (v *lbValidator) timeoutOrOff(path string, t TimeoutOrOff) time.Duration {
	switch {
	case t == timeoutOff:
		return -1
	case t < 0:
		v.d.errorf(path, "must not be negative, got %v (use off for no timeout)", time.Duration(t))
		return 0
	}
	return time.Duration(t)
}
