package agentclient_test

import (
	"context"
	"crypto/tls"
	"errors"
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
				_, err := c.List(ctx)
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

// TestHeartbeatKeepsItsConnection: while every kept connection of the
// calls is busy with a long call (starts waiting on an artifact fetch) and
// the agent takes no new connection (a handshake that never ends, as on a
// host too loaded to finish one in time), heartbeats are still answered,
// over the connection the first heartbeat opened; the long calls end well.
func TestHeartbeatKeepsItsConnection(t *testing.T) {
	const n = 4
	var arrived sync.WaitGroup
	hold := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/v1/instances" {
			arrived.Done()
			<-hold
			w.Write([]byte(`{"instances":[]}`))
			return
		}
		w.Write([]byte(`{"name":"h1"}`))
	}))
	// handshakes, once closed, holds every new connection's handshake
	// until the test ends.
	handshakes := make(chan struct{})
	var held atomic.Bool
	srv.TLS = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		if held.Load() {
			<-handshakes
			return nil, errors.New("the test ended")
		}
		return nil, nil
	}}
	srv.StartTLS()
	defer srv.Close() // after the held calls and handshakes are let go
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	defer release()
	defer close(handshakes)
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	c := agentclient.New(srv.URL, &tls.Config{RootCAs: roots})
	defer c.HTTP.CloseIdleConnections()
	ctx := testenv.Context(t, 30*time.Second)

	if _, err := c.Host(ctx); err != nil { // opens the heartbeat's connection
		t.Fatal(err)
	}
	arrived.Add(n)
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := c.List(ctx)
			errs <- err
		}()
	}
	arrived.Wait()
	held.Store(true)
	for i := range 10 {
		bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		h, err := c.Host(bctx)
		cancel()
		if err != nil || h.Name != "h1" {
			t.Fatalf("heartbeat %d while %d calls held every other connection: %+v, %v", i, n, h, err)
		}
	}
	release()
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("long call: %v", err)
		}
	}
}
