// Command shoal deploys, balances and scales an app on plain Linux servers.
// See the README for the commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/shoal-dev/shoal/internal/cli"
	shoalruntime "github.com/shoal-dev/shoal/internal/runtime"
)

func main() {
	// A detached runtime re-executes this binary as each instance's shim.
	if code, ok := shoalruntime.ShimMain(); ok {
		os.Exit(code)
	}
	// `shoal lb` with a floating address re-executes it as keepalived's guard.
	if code, ok := cli.VIPGuardMain(); ok {
		os.Exit(code)
	}
	// One scheduler slot (P) more than Go's default, unless the user set
	// GOMAXPROCS: the balancer's event loops (one per CPU) spend their
	// idle moments blocked in epoll_wait, and with no idle P Go's sysmon
	// takes a blocked loop's P after 20 us, so that the loop must win one
	// back (scheduler lock, futex wake-ups) each time epoll_wait returns.
	// A spare P keeps them. bench/lb.sh measured 5-15% less CPU per request.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
