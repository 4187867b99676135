// Command backend is the target server of the benchmarks in bench/: it
// answers every HTTP request with a fixed body of about 100 bytes and
// echoes WebSocket messages on /ws; /compress/ serves compressible
// bodies of realistic ratios for bench/compress.sh (assets.go). It prints "listening addr=HOST:PORT"
// once bound, so scripts can use port 0; with -listeners N it listens on N
// ports of the address and prints one such line for each. With -tls-cert
// and -tls-key it serves HTTPS, HTTP/2 and HTTP/1.1 through ALPN.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	name := flag.String("name", "backend", "name put in each response, to see which backend answered")
	listeners := flag.Int("listeners", 1, "number of ports to listen on (each with -addr's host; use port 0 for more than one)")
	certFile := flag.String("tls-cert", "", "serve TLS (ALPN h2 and http/1.1) with this PEM certificate; needs -tls-key")
	keyFile := flag.String("tls-key", "", "the PEM key of -tls-cert")
	flag.Parse()
	if (*certFile == "") != (*keyFile == "") {
		log.Fatal("-tls-cert and -tls-key go together")
	}

	// About 100 bytes in all, like a small JSON API answer.
	body := fmt.Appendf(nil, `{"ok":true,"backend":%q,"pad":"%s"}`+"\n", *name, "0123456789012345678901234567890123456789012345678901234567")
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
	mux.HandleFunc("/ws", echo)
	serveAssets(mux)

	if *listeners < 1 {
		log.Fatalf("-listeners %d: want at least 1", *listeners)
	}
	lns := make([]net.Listener, *listeners)
	for i := range lns {
		ln, err := net.Listen("tcp", *addr)
		if err != nil {
			log.Fatalf("listen %d of %d on %s: %v", i+1, *listeners, *addr, err)
		}
		lns[i] = ln
		fmt.Printf("listening addr=%s\n", ln.Addr())
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	errc := make(chan error, len(lns))
	for _, ln := range lns {
		go func() {
			if *certFile != "" {
				errc <- srv.ServeTLS(ln, *certFile, *keyFile)
				return
			}
			errc <- srv.Serve(ln)
		}()
	}
	for range lns {
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Fatalf("serve: %v", err)
		}
	}
}

// echo sends every WebSocket message back until the client closes.
func echo(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	ctx := r.Context()
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			return
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			return
		}
	}
}
