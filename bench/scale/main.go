// Command scale measures the server side of a fleet at scale (issue 12):
// the real fleet.Fleet and one real controller.Controller per app drive
// simulated hosts, each a real agent.Agent over mutual TLS whose runtime
// runs instances as in-process HTTP listeners (simruntime.go), so that
// every heartbeat, exits long poll, start, stop and health check is a real
// request over a real socket. See run.go for what is measured.
//
//	go build -o /tmp/scale ./bench/scale && /tmp/scale -servers 3,1 -hosts 1000 -apps 20 -per 500 -steady 60s
//
// Each server runs in its own process (this program again, with
// SCALE_SERVER set to its manifest; servers.go), as do the agents (with
// SCALE_AGENTS set to each one's manifest; -agent-procs of them, since a
// listener per instance needs more descriptors than one process may open
// here), so that each server's CPU time and memory are its own (/proc)
// and the kernel shares the CPU between them. Certificates: the fleet
// CA signs each host's key directly (pki.CA.SignCSR, files written as
// pki.Join leaves them, loaded by pki.LoadNode), instead of 1,000 joins
// with one-time tokens; everything after that is the real mutual TLS.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
)

// agentsEnv names the manifest of the agents' process.
const agentsEnv = "SCALE_AGENTS"

func main() {
	if path := os.Getenv(serverEnv); path != "" {
		if err := runServer(path); err != nil {
			fmt.Fprintln(os.Stderr, "scale server:", err)
			os.Exit(1)
		}
		return
	}
	if path := os.Getenv(agentsEnv); path != "" {
		if err := runAgents(path); err != nil {
			fmt.Fprintln(os.Stderr, "scale agents:", err)
			os.Exit(1)
		}
		return
	}
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}
