// Command abruptapp replaces examples/goapp's main.go in the tests that
// need an app which, like a Node.js server without a signal handler, ends
// at SIGTERM at once and cuts its requests in flight: only the balancers'
// drain keeps them from failing. GET / sends its headers and the first
// line, waits 100 ms, then sends the rest, so that requests are in flight
// at any moment under load.
package main

import (
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		log.Fatal("PORT must be set")
	}
	host := os.Getenv("HOST")
	if host == "" {
		host = "127.0.0.1"
	}
	instance := os.Getenv("SHOAL_INSTANCE_ID")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Instance", instance)
		fmt.Fprintf(w, "hello from %s\n", instance)
		w.(http.Flusher).Flush()
		select {
		case <-time.After(100 * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		fmt.Fprintf(w, "goapp %s done\n", instance)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok")
	})
	log.Fatal(http.ListenAndServe(net.JoinHostPort(host, port), mux))
}
