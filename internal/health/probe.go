package health

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// maxDrain bounds how much of a probe's response body is read before it
// is closed.
const maxDrain = 64 << 10

// Prober sends single checks of one Spec: a GET of Spec.Path bounded by
// Spec.Timeout that passes on a status in Spec.Statuses. Checker uses it
// for every probe; callers that schedule probes themselves (the
// controller ramps its probes of a booting instance) use it directly. A
// Prober is safe for concurrent use.
type Prober struct {
	spec   Spec
	client *http.Client // nil: exchange, over a connection of its own
	dialer *net.Dialer
	slots  *slots // bounds the exchanges in flight; nil with a client
}

// MaxProbesInFlight bounds the default probes of one process in flight at
// once, over every Prober: a probe beyond it waits for a slot before its
// timeout starts. A server probing 10,000 instances otherwise had up to
// 10,000 probe goroutines runnable at once on 2 cores; each waited a
// second or more for the CPU after its answer arrived, so checks timed out
// on healthy targets, and the fleet's heartbeats, waiting in the same
// queue, declared hosts lost. The timeout is meant to measure the target,
// not the checker's queue. With 512 in flight a probe that answers within
// a millisecond leaves room for hundreds of thousands of checks a second;
// only 512 targets that all hang at once would delay the others, by at
// most their timeout.
const MaxProbesInFlight = 512

// slots is a counting semaphore of probes in flight.
type slots struct {
	ch      chan struct{}
	waiting atomic.Int32 // probes waiting for a slot (tests)
}

func newSlots(n int) *slots { return &slots{ch: make(chan struct{}, n)} }

// processSlots are the slots of the default probes of this process.
var processSlots = newSlots(MaxProbesInFlight)

// acquire waits for a slot until ctx ends.
func (s *slots) acquire(ctx context.Context) error {
	select {
	case s.ch <- struct{}{}:
		return nil
	default:
	}
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	select {
	case s.ch <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *slots) release() { <-s.ch }

// NewProber returns a Prober for spec (defaults applied). A nil client
// means the default: every probe opens a new TCP connection, as a real
// client would (keep-alives off), sends one GET with "Connection: close"
// and closes the connection after the response; no proxy, no redirects
// followed. It sends what net/http's client with keep-alives off sends,
// but on the caller's goroutine, without the three goroutines and the
// connection pool's bookkeeping that client spends on each connection (a
// server probing 10,000 instances opens 5,000 connections a second).
func NewProber(spec Spec, client *http.Client) *Prober {
	spec = spec.WithDefaults()
	p := &Prober{spec: spec, client: client, dialer: &net.Dialer{Timeout: spec.Timeout, KeepAlive: -1, Control: zeroLinger}}
	if client == nil {
		p.slots = processSlots
	}
	return p
}

// Probe sends one check to addr (host:port) and returns whether it passed
// and why ("status 200", "timeout after 1s", "connection refused" ...).
func (p *Prober) Probe(ctx context.Context, addr string) (bool, string) {
	if p.slots != nil {
		if err := p.slots.acquire(ctx); err != nil {
			return false, err.Error() // the caller gave up: no verdict
		}
		defer p.slots.release()
	}
	ctx, cancel := context.WithTimeout(ctx, p.spec.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+p.spec.Path, nil)
	if err != nil {
		return false, fmt.Sprintf("bad request: %v", err)
	}
	if p.spec.Host != "" {
		req.Host = p.spec.Host
	}
	req.Header.Set("User-Agent", "shoal-health/1")
	var code int
	if p.client != nil {
		code, err = p.do(req)
	} else {
		code, err = p.exchange(ctx, req)
	}
	if err != nil {
		return false, p.describe(ctx, err)
	}
	return p.spec.passes(code), fmt.Sprintf("status %d", code)
}

// do sends req with the caller's client.
func (p *Prober) do(req *http.Request) (int, error) {
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, err
	}
	// Read what the target sent (bounded) so it sees a complete exchange,
	// then close.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	resp.Body.Close()
	return resp.StatusCode, nil
}

// zeroLinger sets SO_LINGER to 0 on a check's socket before it connects:
// closed, it sends a reset, as HAProxy closes its checks. A close with a
// FIN leaves the prober's end in TIME_WAIT for a minute, holding an
// ephemeral port; at thousands of checks a second those fill the port
// range, and every connect then searches it (a 1,000-host fleet kept
// 127,000 and spent a quarter of its CPU in connect). The response has
// been read when a check closes, so the target loses nothing it sent. It
// is set before the connect, not after the dial returns, so that it also
// holds for a dial given up after the kernel connected (a timeout under
// load), which net closes at once.
func zeroLinger(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptLinger(int(fd), syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 0})
	})
	return errors.Join(err, serr)
}

// Bounds of a response read by exchange: its headers (as the default
// client's MaxResponseHeaderBytes) and the informational (1xx) responses
// skipped before the final one.
const (
	maxHeaderBytes = 64 << 10
	max1xx         = 5
)

// Buffers of exchange, reused across probes.
var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 1024) }}
)

var errHeadersTooLong = fmt.Errorf("response headers longer than %d KiB", maxHeaderBytes>>10)

// exchange sends req over a new TCP connection to req.URL.Host and
// returns the status of the final response after reading its body
// (bounded by maxDrain, so that the target sees a complete exchange); the
// connection is closed on return. ctx bounds everything, from the dial to
// the last byte read.
func (p *Prober) exchange(ctx context.Context, req *http.Request) (int, error) {
	conn, err := p.dialer.DialContext(ctx, "tcp", req.URL.Host)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	// A cancelled ctx (not only its deadline) ends a read or write in
	// progress at once.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	req.Close = true // "Connection: close", as the client with keep-alives off sends
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(conn)
	err = req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	writers.Put(bw)
	if err != nil {
		return 0, err
	}
	lr := &io.LimitedReader{R: conn, N: maxHeaderBytes}
	br := readers.Get().(*bufio.Reader)
	br.Reset(lr)
	defer func() {
		br.Reset(nil)
		readers.Put(br)
	}()
	for range max1xx + 1 {
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			if lr.N <= 0 {
				return 0, errHeadersTooLong
			}
			return 0, err
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			continue // informational: the final response follows
		}
		lr.N += maxDrain
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	return 0, fmt.Errorf("more than %d informational responses", max1xx)
}

// describe turns a probe error into a short reason.
func (p *Prober) describe(ctx context.Context, err error) string {
	var ne net.Error
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return ctx.Err().Error() // the caller gave up: no verdict on the target
	case errors.Is(ctx.Err(), context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("timeout after %s", p.spec.Timeout)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed before response"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}
