// Command dashdemo serves the dashboard with the simulated demo.Source, for
// working on the pages without a running controller:
//
//	go run ./internal/dashboard/demo/dashdemo -addr 127.0.0.1:8089 -token dev
//
// It also offers POST /demo/kill?id=, /demo/deploy?app= and
// /demo/scale?app=&desired= (without authentication: it is a development
// tool that listens on loopback) so a browser test can act on the
// simulation.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shoal-dev/shoal/internal/dashboard"
	"github.com/shoal-dev/shoal/internal/dashboard/demo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "dashdemo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dashdemo", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8089", "listen address")
	token := fs.String("token", "dev", "admin token for the login form")
	tick := fs.Duration("tick", time.Second, "simulation step")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	src := demo.New(demo.Options{Backfill: true, Tick: *tick, Seed: 7})
	ui := dashboard.New(dashboard.Options{Token: *token, Source: src, Logger: log})
	mux := http.NewServeMux()
	mux.Handle("/ui/", ui)
	mux.Handle("/demo/", demo.Controls(src))
	mux.Handle("/{$}", http.RedirectHandler("/ui/", http.StatusSeeOther))

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Info("dashboard demo", "url", "http://"+ln.Addr().String()+"/ui/", "token", *token)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return src.Run(ctx) })
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		ui.Close()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
