package health

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// rawTarget is a TCP listener that answers each connection with answer,
// after reading the request, and records every request as it arrived.
type rawTarget struct {
	ln     net.Listener
	answer func(req *http.Request, w io.Writer)

	mu    sync.Mutex
	reqs  []*http.Request
	conns int
	wg    sync.WaitGroup
}

func newRawTarget(t *testing.T, answer func(req *http.Request, w io.Writer)) *rawTarget {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rt := &rawTarget{ln: ln, answer: answer}
	rt.wg.Add(1)
	go func() {
		defer rt.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			rt.mu.Lock()
			rt.conns++
			rt.mu.Unlock()
			rt.wg.Add(1)
			go func() {
				defer rt.wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(wait))
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				rt.mu.Lock()
				rt.reqs = append(rt.reqs, req)
				rt.mu.Unlock()
				rt.answer(req, c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		rt.wg.Wait()
	})
	return rt
}

func (rt *rawTarget) addr() string { return rt.ln.Addr().String() }

func (rt *rawTarget) seen() (reqs []*http.Request, conns int) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return slices.Clone(rt.reqs), rt.conns
}

func answerOK(_ *http.Request, w io.Writer) {
	io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
}

// TestProbeSendsWhatTheHTTPClientSends: the default probe's request is,
// header for header, what net/http's client with keep-alives and
// compression off sends (the prober's default before it sent requests
// itself), each probe on a connection of its own.
func TestProbeSendsWhatTheHTTPClientSends(t *testing.T) {
	rt := newRawTarget(t, answerOK)
	spec := Spec{Path: "/healthz?deep=1", Host: "app.internal", Timeout: time.Second}
	client := &http.Client{
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	defer client.CloseIdleConnections()
	ctx := context.Background()
	for _, p := range []*Prober{NewProber(spec, client), NewProber(spec, nil), NewProber(spec, nil)} {
		if ok, why := p.Probe(ctx, rt.addr()); !ok || why != "status 200" {
			t.Fatalf("probe: %v %q", ok, why)
		}
	}
	reqs, conns := rt.seen()
	if len(reqs) != 3 || conns != 3 {
		t.Fatalf("%d requests on %d connections, want 3 on 3", len(reqs), conns)
	}
	shape := func(r *http.Request) string {
		return fmt.Sprintf("%s %s %s host=%s close=%v headers=%v", r.Method, r.RequestURI, r.Proto, r.Host, r.Close, r.Header)
	}
	want := shape(reqs[0])
	if !strings.Contains(want, "GET /healthz?deep=1 HTTP/1.1 host=app.internal close=true") {
		t.Fatalf("the client's request: %s", want)
	}
	for _, r := range reqs[1:] {
		if got := shape(r); got != want {
			t.Errorf("probe sent\n%s\nthe client sends\n%s", got, want)
		}
	}
}

// TestProbeReadsResponses: the final response after informational ones
// decides; a body is read (bounded) and a chunked one too; headers longer
// than the bound fail the check with that reason; a target that accepts
// the connection and never answers fails with a timeout; a probe whose
// ctx is cancelled says so instead of blaming the target.
func TestProbeReadsResponses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(req *http.Request, w io.Writer)
		ok     bool
		why    string
	}{
		{"early hints then 503", func(_ *http.Request, w io.Writer) {
			io.WriteString(w, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
		}, false, "status 503"},
		{"204", func(_ *http.Request, w io.Writer) {
			io.WriteString(w, "HTTP/1.1 204 No Content\r\n\r\n")
		}, true, "status 204"},
		{"big chunked body", func(_ *http.Request, w io.Writer) {
			io.WriteString(w, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
			for range 40 {
				fmt.Fprintf(w, "%x\r\n%s\r\n", 4096, strings.Repeat("x", 4096))
			}
			io.WriteString(w, "0\r\n\r\n")
		}, true, "status 200"},
		{"headers too long", func(_ *http.Request, w io.Writer) {
			io.WriteString(w, "HTTP/1.1 200 OK\r\n")
			for range 100 {
				fmt.Fprintf(w, "X-Pad: %s\r\n", strings.Repeat("p", 1000))
			}
			io.WriteString(w, "Content-Length: 0\r\n\r\n")
		}, false, "response headers longer than 64 KiB"},
		{"not HTTP", func(_ *http.Request, w io.Writer) {
			io.WriteString(w, "SSH-2.0-OpenSSH_9.6\r\n")
		}, false, `malformed HTTP response "SSH-2.0-OpenSSH_9.6"`},
		{"closed", func(*http.Request, io.Writer) {}, false, "connection closed before response"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := newRawTarget(t, tc.answer)
			p := NewProber(Spec{Timeout: time.Second}, nil)
			if ok, why := p.Probe(context.Background(), rt.addr()); ok != tc.ok || why != tc.why {
				t.Fatalf("Probe = %v, %q; want %v, %q", ok, why, tc.ok, tc.why)
			}
		})
	}

	silent, err := net.Listen("tcp", "127.0.0.1:0") // accepts (backlog), never reads
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	p := NewProber(Spec{Timeout: 50 * time.Millisecond}, nil)
	if ok, why := p.Probe(context.Background(), silent.Addr().String()); ok || why != "timeout after 50ms" {
		t.Fatalf("a target that never answers: %v, %q", ok, why)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if ok, why := NewProber(Spec{Timeout: time.Second}, nil).Probe(ctx, silent.Addr().String()); ok || why != "context canceled" {
		t.Fatalf("a cancelled probe: %v, %q", ok, why)
	}
}

// BenchmarkProbe compares a probe over net/http's client (keep-alives
// off) with the default one; both open a connection per probe to the same
// in-process server, whose cost is in both.
func BenchmarkProbe(b *testing.B) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, DisableCompression: true}}
	for _, bc := range []struct {
		name string
		p    *Prober
	}{{"http-client", NewProber(Spec{}, client)}, {"default", NewProber(Spec{}, nil)}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if ok, why := bc.p.Probe(context.Background(), ln.Addr().String()); !ok {
					b.Fatal(why)
				}
			}
		})
	}
}

// TestProbeClosesWithReset: after the response is read, the probe's
// connection is closed with a reset, so that no TIME_WAIT is left on the
// prober's side.
func TestProbeClosesWithReset(t *testing.T) {
	after := make(chan error, 1)
	rt := newRawTarget(t, func(req *http.Request, w io.Writer) {
		answerOK(req, w)
		_, err := w.(net.Conn).Read(make([]byte, 1)) // until the prober closes
		after <- err
	})
	if ok, why := NewProber(Spec{Timeout: time.Second}, nil).Probe(context.Background(), rt.addr()); !ok {
		t.Fatal(why)
	}
	if err := <-after; !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the target read %v after its response, want a reset", err)
	}
}

// TestProbeWaitsForASlotOutsideItsTimeout: a probe beyond the slots in
// flight waits for one (or for its caller to give up, without touching
// the target), and its timeout starts only once it has a slot.
func TestProbeWaitsForASlotOutsideItsTimeout(t *testing.T) {
	rt := newRawTarget(t, answerOK)
	p := NewProber(Spec{Timeout: 20 * time.Millisecond}, nil)
	p.slots = newSlots(1)
	p.slots.ch <- struct{}{} // the only slot is taken

	ctx, cancel := context.WithCancel(context.Background())
	gave := make(chan string, 1)
	go func() {
		_, why := p.Probe(ctx, rt.addr())
		gave <- why
	}()
	testenv.Eventually(t, wait, func() error {
		if n := p.slots.waiting.Load(); n != 1 {
			return fmt.Errorf("%d probes waiting for a slot", n)
		}
		return nil
	})
	cancel()
	if why := <-gave; why != "context canceled" {
		t.Fatalf("a probe given up while waiting: %q", why)
	}

	type result struct {
		ok  bool
		why string
	}
	done := make(chan result, 1)
	began := time.Now()
	go func() {
		ok, why := p.Probe(context.Background(), rt.addr())
		done <- result{ok, why}
	}()
	// Hold the slot for several of the probe's timeouts.
	testenv.Eventually(t, wait, func() error {
		if p.slots.waiting.Load() != 1 || time.Since(began) < 5*p.spec.Timeout {
			return errors.New("waiting")
		}
		return nil
	})
	if _, conns := rt.seen(); conns != 0 {
		t.Fatalf("the target saw %d connections from probes waiting for a slot", conns)
	}
	p.slots.release()
	if r := <-done; !r.ok || r.why != "status 200" {
		t.Fatalf("after waiting longer than its timeout for a slot: %v, %q", r.ok, r.why)
	}
}
