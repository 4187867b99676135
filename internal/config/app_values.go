package config

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// AppStatuses is a set of HTTP status codes written as a comma-separated
// list of codes and inclusive ranges: "200-399", "200,204,300-302". The zero
// value is the default set, 200-399.
type AppStatuses struct {
	ranges [][2]int
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *AppStatuses) UnmarshalText(b []byte) error {
	text := strings.TrimSpace(string(b))
	if text == "" {
		return errors.New(`empty status list (write codes and ranges, such as "200-399" or "200,204")`)
	}
	var out [][2]int
	for part := range strings.SplitSeq(text, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, errA := appStatusCode(lo)
		bnd := a
		var errB error
		if isRange {
			bnd, errB = appStatusCode(hi)
		}
		if errA != nil || errB != nil {
			return fmt.Errorf("invalid status %q (codes are 100-599; write codes and ranges, such as \"200-399\" or \"200,204\")", part)
		}
		if bnd < a {
			return fmt.Errorf("invalid status range %q: the first code is larger than the last", part)
		}
		out = append(out, [2]int{a, bnd})
	}
	s.ranges = out
	return nil
}

func appStatusCode(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 100 || n > 599 {
		return 0, errors.New("bad status")
	}
	return n, nil
}

// MarshalText implements encoding.TextMarshaler; it writes the canonical
// form that UnmarshalText reads back.
func (s AppStatuses) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// String returns the set in the file's notation, such as "200-399".
func (s AppStatuses) String() string {
	var parts []string
	for _, r := range s.Ranges() {
		if r[0] == r[1] {
			parts = append(parts, strconv.Itoa(r[0]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", r[0], r[1]))
		}
	}
	return strings.Join(parts, ",")
}

// Ranges returns the inclusive [low, high] code ranges of the set.
func (s AppStatuses) Ranges() [][2]int {
	if len(s.ranges) == 0 {
		return [][2]int{{200, 399}}
	}
	return append([][2]int(nil), s.ranges...)
}

// Contains reports whether code passes the check.
func (s AppStatuses) Contains(code int) bool {
	for _, r := range s.Ranges() {
		if code >= r[0] && code <= r[1] {
			return true
		}
	}
	return false
}

// appStopSignals are the signals an app may ask to be stopped with. SIGKILL is
// not among them: it is what Shoal sends after stop_timeout.
var appStopSignals = map[string]syscall.Signal{
	"SIGTERM": syscall.SIGTERM,
	"SIGINT":  syscall.SIGINT,
	"SIGQUIT": syscall.SIGQUIT,
	"SIGHUP":  syscall.SIGHUP,
	"SIGUSR1": syscall.SIGUSR1,
	"SIGUSR2": syscall.SIGUSR2,
}

// appSignalName returns the canonical "SIGXXX" form of a signal name, or ""
// if it is not an allowed stop signal.
func appSignalName(name string) string {
	n := strings.ToUpper(strings.TrimSpace(name))
	if !strings.HasPrefix(n, "SIG") {
		n = "SIG" + n
	}
	if _, ok := appStopSignals[n]; !ok {
		return ""
	}
	return n
}

// Signal returns run.stop_signal as a signal (SIGTERM when unset).
func (r AppRun) Signal() syscall.Signal {
	if s, ok := appStopSignals[appSignalName(r.StopSignal)]; ok {
		return s
	}
	return syscall.SIGTERM
}

// Balancing algorithms accepted in balancer.algorithm.
const (
	AlgorithmRoundRobin    = "round_robin"
	AlgorithmLeastRequests = "least_requests"
	AlgorithmP2C           = "p2c"
)

var (
	appNameRe      = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	appEnvNameRe   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	appCookieRe    = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$") // RFC 6265 token
	appReservedEnv = map[string]string{
		"PORT":     "it is set by Shoal to the port each instance must listen on",
		"ROOT_URL": "set run.root_url instead",
	}
)

// EnvNameProblem explains why name cannot be a variable of run.env or of
// the secrets file (not a valid name, or reserved by Shoal), or returns "".
func EnvNameProblem(name string) string { return envNameProblem(name) }

// envNameProblem explains why name cannot be set by the user, or returns "".
func envNameProblem(name string) string {
	if !appEnvNameRe.MatchString(name) {
		return fmt.Sprintf("invalid variable name %q (use letters, digits and _, not starting with a digit)", name)
	}
	if why, ok := appReservedEnv[name]; ok {
		return fmt.Sprintf("%s is reserved: %s", name, why)
	}
	if strings.HasPrefix(name, "SHOAL_") {
		return fmt.Sprintf("%s is reserved: names starting with SHOAL_ belong to Shoal", name)
	}
	return ""
}
