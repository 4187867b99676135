// Command goapp is a small HTTP app for trying Shoal with a compiled build: it reads PORT,
// serves / and /healthz, can boot slowly (BOOT_DELAY_MS), and stops gracefully on SIGTERM.
//
// Build it the way Shoal does: `go build -o bin/goapp .`, then pack the bin folder.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

func run() error {
	port, err := strconv.Atoi(os.Getenv("PORT"))
	if err != nil || port <= 0 || port > 65535 {
		return errors.New("PORT must be set to a TCP port number")
	}
	instance := os.Getenv("SHOAL_INSTANCE_ID")
	if instance == "" {
		instance = "pid-" + strconv.Itoa(os.Getpid())
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	if ms, _ := strconv.Atoi(os.Getenv("BOOT_DELAY_MS")); ms > 0 {
		log.Printf("%s: booting for %d ms", instance, ms)
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-ctx.Done():
			return nil
		}
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Instance", instance)
		fmt.Fprintf(w, "hello from %s (pid %d)\n", instance, os.Getpid())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if ctx.Err() != nil {
			http.Error(w, "stopping", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "ok")
	})
	host := os.Getenv("HOST")
	if host == "" {
		host = "127.0.0.1"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Printf("%s: listening on %s", instance, ln.Addr())

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Printf("%s: stopping gracefully", instance)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	<-served
	log.Printf("%s: stopped", instance)
	return nil
}
