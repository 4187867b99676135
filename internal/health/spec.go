// Package health owns active HTTP health checking: it probes each target
// every interval (with jitter and a timeout), applies healthy and unhealthy
// thresholds and a boot grace period, and reports each transition through a
// callback. It knows nothing of pools or instances; the balancer and the
// controller connect its reports to them.
package health

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Defaults applied by Spec.WithDefaults (and so by New) to zero fields.
const (
	DefaultPath               = "/"
	DefaultInterval           = 5 * time.Second
	DefaultTimeout            = 2 * time.Second
	DefaultHealthyThreshold   = 2
	DefaultUnhealthyThreshold = 3
	DefaultStatuses           = "200-399"
)

// StatusRange is an inclusive range of HTTP status codes.
type StatusRange struct{ Min, Max int }

// Contains reports whether code is in r.
func (r StatusRange) Contains(code int) bool { return code >= r.Min && code <= r.Max }

// String formats r as "200" or "200-399".
func (r StatusRange) String() string {
	if r.Min == r.Max {
		return strconv.Itoa(r.Min)
	}
	return fmt.Sprintf("%d-%d", r.Min, r.Max)
}

// ParseStatuses parses a comma-separated list of status codes and
// inclusive ranges, such as "200-399" or "200,204,300-302". Every code must
// be in 100-599 and every range ascending; spaces around items are
// allowed. The empty string is an error.
func ParseStatuses(s string) ([]StatusRange, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("parse statuses: empty")
	}
	var out []StatusRange
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		lo, hi, isRange := strings.Cut(item, "-")
		first, err := parseCode(lo)
		if err != nil {
			return nil, fmt.Errorf("parse statuses %q: %w", s, err)
		}
		last := first
		if isRange {
			if last, err = parseCode(hi); err != nil {
				return nil, fmt.Errorf("parse statuses %q: %w", s, err)
			}
			if last < first {
				return nil, fmt.Errorf("parse statuses %q: range %s is descending", s, item)
			}
		}
		out = append(out, StatusRange{first, last})
	}
	return out, nil
}

func parseCode(s string) (int, error) {
	s = strings.TrimSpace(s)
	if len(s) != 3 {
		return 0, fmt.Errorf("status %q is not three digits", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 100 || n > 599 {
		return 0, fmt.Errorf("status %q not in 100-599", s)
	}
	return n, nil
}

// FormatStatuses is the inverse of ParseStatuses.
func FormatStatuses(rs []StatusRange) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

// Spec describes the active check of a set of targets. Zero fields take
// the defaults above (see WithDefaults).
type Spec struct {
	// Path is the request path (and query) probed with GET; default "/".
	Path string
	// Host is the Host header sent; empty sends the target's host:port.
	Host string
	// Interval is the time between the starts of two probes of a target;
	// default 5s.
	Interval time.Duration
	// Timeout bounds one probe, connect to end of headers; default 2s.
	Timeout time.Duration
	// HealthyThreshold is the number of consecutive passes that make a
	// target healthy; default 2.
	HealthyThreshold int
	// UnhealthyThreshold is the number of consecutive failures (outside
	// the grace period) that make a target unhealthy; default 3.
	UnhealthyThreshold int
	// Statuses are the response codes that pass; default 200-399.
	// Redirects are not followed.
	Statuses []StatusRange
	// Jitter spreads probes: each interval is scaled by a uniform factor
	// in [1-Jitter, 1+Jitter]. 0 (the default) means none; at most 1.
	Jitter float64
}

// WithDefaults returns s with zero fields set to their defaults.
func (s Spec) WithDefaults() Spec {
	if s.Path == "" {
		s.Path = DefaultPath
	}
	if s.Interval <= 0 {
		s.Interval = DefaultInterval
	}
	if s.Timeout <= 0 {
		s.Timeout = DefaultTimeout
	}
	if s.HealthyThreshold <= 0 {
		s.HealthyThreshold = DefaultHealthyThreshold
	}
	if s.UnhealthyThreshold <= 0 {
		s.UnhealthyThreshold = DefaultUnhealthyThreshold
	}
	if len(s.Statuses) == 0 {
		s.Statuses = []StatusRange{{200, 399}}
	}
	s.Jitter = min(max(s.Jitter, 0), 1)
	return s
}

// Validate reports every problem in s at once (zero fields are fine: they
// take defaults).
func (s Spec) Validate() error {
	var errs []error
	if s.Path != "" && !strings.HasPrefix(s.Path, "/") {
		errs = append(errs, fmt.Errorf("path %q must start with /", s.Path))
	}
	if strings.ContainsAny(s.Host, " /\r\n") {
		errs = append(errs, fmt.Errorf("host %q is not a host name", s.Host))
	}
	if s.Interval < 0 || s.Timeout < 0 {
		errs = append(errs, errors.New("interval and timeout must not be negative"))
	}
	if s.HealthyThreshold < 0 || s.UnhealthyThreshold < 0 {
		errs = append(errs, errors.New("thresholds must not be negative"))
	}
	if s.Jitter < 0 || s.Jitter > 1 {
		errs = append(errs, fmt.Errorf("jitter %v not in 0-1", s.Jitter))
	}
	for _, r := range s.Statuses {
		if r.Min < 100 || r.Max > 599 || r.Max < r.Min {
			errs = append(errs, fmt.Errorf("status range %s invalid", r))
		}
	}
	return errors.Join(errs...)
}

func (s Spec) passes(code int) bool {
	for _, r := range s.Statuses {
		if r.Contains(code) {
			return true
		}
	}
	return false
}
