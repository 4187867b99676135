package agentclient_test

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/agentclient"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestConcurrentCallsReuseTheirConnections: calls made ten at a time keep
// their connections for the next ten, instead of a new TLS handshake for
// most of them.
func TestConcurrentCallsReuseTheirConnections(t *testing.T) {
	const n = 10
	var arrived sync.WaitGroup
	var release atomic.Pointer[chan struct{}]
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Done()
		<-*release.Load()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"name":"h1"}`))
	}))
	var conns atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	defer srv.Close()
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	c := agentclient.New(srv.URL, &tls.Config{RootCAs: roots})
	defer c.HTTP.CloseIdleConnections()
	ctx := testenv.Context(t, 30*time.Second)

	round := func() {
		arrived.Add(n)
		ch := make(chan struct{})
		release.Store(&ch)
		errs := make(chan error, n)
		for range n {
			go func() {
				_, err := c.Host(ctx)
				errs <- err
			}()
		}
		arrived.Wait() // all n in flight at once: n connections
		close(ch)
		for range n {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	}
	round()
	round()
	if got := conns.Load(); got != n {
		t.Fatalf("two rounds of %d concurrent calls opened %d connections, want %d", n, got, n)
	}
}
