package cli

import "github.com/shoal-dev/shoal/internal/daemon"

// VIPGuardMain runs this process as the keepalived guard of a `shoal lb`
// with a floating address when it was started as one, and returns its
// exit code and true; otherwise false at once (daemon.VIPGuardMain). main
// calls it first.
func VIPGuardMain() (code int, isGuard bool) { return daemon.VIPGuardMain() }
