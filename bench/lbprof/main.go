// Command lbprof runs the balancer of package lb in process with a CPU
// profile, for finding where a request's time goes under load (bench/lb.sh
// measures the shoal binary; this measures the same code with pprof on).
//
//	go run ./bench/lbprof -addr 127.0.0.1:18090 -targets 127.0.0.1:3001,127.0.0.1:3002 -cpuprofile cpu.out -d 15s
//
// Drive it with wrk while it runs; it stops after -d or on SIGINT.
// -memprofile writes the allocation profile when it stops. -cert and -key
// make the listener TLS (drive it with h2load); -tls-nethttp serves its
// HTTP/1.1 connections through net/http instead of the event loops;
// -h2-nethttp serves HTTP/2 with x/net's server instead of the loops (drive
// HTTP/2 with h2load -c 64 -m 10):
//
//	go run ./bench/lbprof -cert c.pem -key k.pem -targets ... -cpuprofile cpu.out
//	go run ./bench/lbprof -cert c.pem -key k.pem -h2-nethttp -targets ... -cpuprofile cpu.out
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/internal/lb"
	"github.com/shoal-dev/shoal/internal/pool"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18090", "listen address")
	targets := flag.String("targets", "", "comma-separated target addresses")
	cpu := flag.String("cpuprofile", "", "write a CPU profile here")
	mem := flag.String("memprofile", "", "write an allocation profile here at the end")
	dur := flag.Duration("d", 15*time.Second, "how long to serve")
	cert := flag.String("cert", "", "PEM certificate: serve TLS (with -key)")
	key := flag.String("key", "", "PEM key of -cert")
	tlsNetHTTP := flag.Bool("tls-nethttp", false, "serve HTTP/1.1 over TLS through net/http (limits.tls_fast_path: false)")
	h2NetHTTP := flag.Bool("h2-nethttp", false, "serve HTTP/2 over TLS with x/net's server (limits.h2_fast_path: false)")
	noRecords := flag.Bool("no-tls-records", false, "keep TLS connections on crypto/tls after the handshake (limits.tls_records: false)")
	flag.Parse()
	ln := lb.Listener{Name: "web", Addr: *addr}
	if *cert != "" {
		ln.TLS = []lb.Certificate{{CertFile: *cert, KeyFile: *key}}
	}
	if err := run(ln, lb.Limits{DisableTLSFastPath: *tlsNetHTTP, DisableH2FastPath: *h2NetHTTP, DisableTLSRecords: *noRecords}, *targets, *cpu, *mem, *dur); err != nil {
		log.Fatal(err)
	}
}

func run(ln lb.Listener, lim lb.Limits, targets, cpu, mem string, dur time.Duration) error {
	pc := lb.PoolConfig{Name: "be", Algorithm: pool.RoundRobin}
	for _, t := range strings.Split(targets, ",") {
		if t != "" {
			pc.Targets = append(pc.Targets, pool.TargetSpec{Addr: t})
		}
	}
	b, err := lb.New(lb.Config{
		Listeners: []lb.Listener{ln},
		Limits:    lim,
		Routes:    []lb.Route{{Name: "all", Pool: "be"}},
		Pools:     []lb.PoolConfig{pc},
	})
	if err != nil {
		return err
	}
	if err := b.Listen(); err != nil {
		return err
	}
	fmt.Printf("listening addr=%s\n", b.Addr("web"))
	if cpu != "" {
		f, err := os.Create(cpu)
		if err != nil {
			return fmt.Errorf("create profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("start profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	if err := b.Run(ctx); err != nil {
		return err
	}
	if mem != "" {
		f, err := os.Create(mem)
		if err != nil {
			return fmt.Errorf("create profile: %w", err)
		}
		defer f.Close()
		// allocs: every allocation since the start, with its call stack;
		// read it with go tool pprof -sample_index=alloc_objects -top.
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			return fmt.Errorf("write profile: %w", err)
		}
	}
	return nil
}
