package lb

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2/hpack"

	"github.com/shoal-dev/shoal/internal/netpoll"
)

// A stream outside the fast subset is served by the listener's handler
// (frontHandler, the net/http path's) in a goroutine of its own, as Go's
// HTTP/2 server would: the request's body comes from the loop through
// h2Fallback, and what the handler writes goes back to the loop, which
// frames it within the flow-control windows. Both sides meet only under
// h2Fallback's lock; the loop never waits for the handler.

// h2FallbackBuf bounds the answer bytes a handler queues before its
// writes wait for the loop to frame them.
const h2FallbackBuf = 64 << 10

// errStreamGone fails a handler's reads and writes once its stream ended
// (reset by the client, or the connection closed).
var errStreamGone = errors.New("http2: stream closed")

// h2Fallback is the meeting point of a stream served by the handler.
type h2Fallback struct {
	st   *evH2Stream // the loop's; the handler's goroutine never touches it
	l    *evLoop
	stop context.CancelCauseFunc // ends the request's context

	mu      sync.Mutex
	cond    *sync.Cond
	in      []byte      // request body not read yet
	inEnd   bool        // the body ended (io.EOF after in)
	trailer http.Header // the request's declared trailers, filled before inEnd
	infos   []h2Head    // informational (1xx) heads to frame before head
	head    *h2Head     // an answer head to frame
	out     []byte      // answer body to frame
	fin     bool        // the handler returned: out is all
	trail   http.Header // the answer's trailers, with fin
	dead    error       // the stream ended: reads and writes fail
	posted  bool        // a pump is queued on the loop
	closed  bool        // the handler closed the request body
	ended   bool        // the loop ended the stream's side
	// expect: the client sent "Expect: 100-continue" and waits for a 100
	// (or the answer) before its body; the first read sends the 100.
	expect bool
	// rtt is the client connection's round-trip time, read on the loop
	// when the stream was handed over and at every pump since; the
	// request's connInfo reports it (rtt.go).
	rtt netpoll.RTT
}

type h2Head struct {
	status int
	header http.Header
}

// fallback hands the stream to the handler.
func (st *evH2Stream) fallback() {
	conn := st.conn
	l := conn.l
	st.dl = 0
	fb := &h2Fallback{st: st, l: l}
	fb.cond = sync.NewCond(&fb.mu)
	r, err := st.request(fb)
	if err != nil {
		conn.resetStream(st.id, 0x1) // PROTOCOL_ERROR: a :path that is no URL
		return
	}
	st.fb = fb
	fb.in, fb.inEnd = st.body, st.remoteDone
	fb.rtt = conn.readRTT()
	st.body = nil
	h := l.s.handler()
	l.s.wg.Add(1)
	go fb.serve(h, r)
}

// handler returns the listener's handler, the net/http path's.
func (s *fastServer) handler() http.Handler {
	return &frontHandler{b: s.b, name: s.name, tls: true, lm: s.lm}
}

// request builds the stream's http.Request as x/net's server does.
func (st *evH2Stream) request(fb *h2Fallback) (*http.Request, error) {
	h := make(http.Header, len(st.hdrs))
	for _, hf := range st.hdrs {
		if strings.HasPrefix(hf.Name, ":") {
			continue
		}
		k := http.CanonicalHeaderKey(hf.Name)
		h[k] = append(h[k], hf.Value)
	}
	if c := h["Cookie"]; len(c) > 1 {
		h["Cookie"] = []string{strings.Join(c, "; ")}
	}
	if st.protocol != "" {
		h[":protocol"] = []string{st.protocol}
	}
	var u *url.URL
	uri := st.path
	if st.method == "CONNECT" && st.protocol == "" {
		u, uri = &url.URL{Host: st.authority}, st.authority
	} else {
		var err error
		if u, err = url.ParseRequestURI(st.path); err != nil {
			return nil, err
		}
	}
	host := st.authority
	if host == "" {
		host = h.Get("Host")
	}
	delete(h, "Host")
	conn := st.conn
	r := &http.Request{
		Method: st.method, URL: u, Proto: "HTTP/2.0", ProtoMajor: 2, Header: h, Host: host,
		RequestURI: uri, RemoteAddr: conn.remote, TLS: conn.cs, ContentLength: st.cl,
	}
	if st.remoteDone && st.bodyN == 0 {
		r.Body, r.ContentLength = http.NoBody, 0
	} else {
		r.Body = h2Body{fb}
	}
	for _, v := range h["Trailer"] {
		for _, k := range strings.Split(v, ",") {
			k = http.CanonicalHeaderKey(strings.TrimSpace(k))
			if k != "" && httpguts.ValidTrailerHeader(k) {
				if r.Trailer == nil {
					r.Trailer = http.Header{}
				}
				r.Trailer[k] = nil
			}
		}
	}
	delete(h, "Trailer")
	fb.trailer = r.Trailer
	if ex := h["Expect"]; len(ex) == 1 && strings.EqualFold(ex[0], "100-continue") && !st.remoteDone {
		fb.expect = true
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	fb.stop = cancel
	ctx = context.WithValue(ctx, connKey{}, &connInfo{stream: fb.readRTT})
	return r.WithContext(ctx), nil
}

// readRTT is the client connection's round-trip time the loop read last
// (the handler's goroutine cannot read the loop's descriptor: it may be
// closed and reused by then).
func (fb *h2Fallback) readRTT() netpoll.RTT {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return fb.rtt
}

// serve runs the handler; its answer ends the stream.
func (fb *h2Fallback) serve(h http.Handler, r *http.Request) {
	defer fb.l.s.wg.Done()
	w := &h2Writer{fb: fb, h: http.Header{}}
	defer func() {
		defer fb.stop(context.Canceled)
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				fb.l.logger().Error("http/2 handler panicked", "listener", fb.l.s.name, "panic", v, "stack", string(debug.Stack()))
			}
			fb.abort()
			return
		}
		w.finish()
	}()
	h.ServeHTTP(w, r)
}

// takeBody passes request body bytes to the handler (on the loop).
func (fb *h2Fallback) takeBody(data []byte, end bool) {
	fb.mu.Lock()
	fb.in = append(fb.in, data...)
	fb.inEnd = fb.inEnd || end
	fb.cond.Broadcast()
	fb.mu.Unlock()
}

// takeTrailers keeps the request trailers the client declared (on the
// loop, before the body's end).
func (fb *h2Fallback) takeTrailers(fields []hpack.HeaderField) {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	if fb.trailer == nil {
		return
	}
	for _, hf := range fields {
		k := http.CanonicalHeaderKey(hf.Name)
		if _, ok := fb.trailer[k]; ok {
			fb.trailer[k] = append(fb.trailer[k], hf.Value)
		}
	}
}

// cancel fails the handler's reads and writes: the stream is gone (on
// the loop).
func (fb *h2Fallback) cancel() {
	fb.mu.Lock()
	if fb.dead == nil {
		fb.dead = errStreamGone
	}
	fb.ended = true
	fb.cond.Broadcast()
	fb.mu.Unlock()
	fb.stop(errStreamGone)
}

// abort ends the stream after a handler's panic (its goroutine).
func (fb *h2Fallback) abort() {
	fb.l.post(func() {
		st := fb.st
		if !st.localDone && !st.conn.done {
			st.conn.resetStream(st.id, 0x2) // INTERNAL_ERROR
		}
	})
}

// post queues a pump on the loop, once until it runs (fb.mu held).
func (fb *h2Fallback) postLocked() {
	if !fb.posted {
		fb.posted = true
		fb.l.post(fb.pump)
	}
}

// pump frames what the handler queued, as far as the windows allow (on
// the loop).
func (fb *h2Fallback) pump() {
	st := fb.st
	c := st.conn
	fb.mu.Lock()
	defer fb.mu.Unlock()
	fb.posted = false
	if fb.ended || c.done {
		return
	}
	fb.rtt = c.readRTT()
	for i := range fb.infos {
		fb.writeHead(&fb.infos[i], false)
	}
	fb.infos = nil
	if hd := fb.head; hd != nil {
		fb.head = nil
		st.headSent = true
		end := fb.fin && len(fb.out) == 0 && len(fb.trail) == 0
		fb.writeHead(hd, end)
	}
	if !st.headSent {
		return
	}
	for len(fb.out) > 0 && !st.localDone {
		w := int(min(c.sendWin, st.sendWin, c.room(), int64(len(fb.out))))
		if w <= 0 {
			st.block()
			break
		}
		last := fb.fin && w == len(fb.out) && len(fb.trail) == 0
		st.data(fb.out[:w], last)
		c.sendWin -= int64(w)
		st.sendWin -= int64(w)
		fb.out = fb.out[w:]
	}
	if len(fb.out) == 0 {
		fb.out = nil
	}
	fb.cond.Broadcast()
	if !fb.fin || len(fb.out) > 0 {
		return
	}
	if !st.localDone {
		if len(fb.trail) > 0 {
			fb.writeFields(fb.trail, "")
			c.writeHeaders(st.id, true)
			st.localDone = true
		} else {
			st.data(nil, true)
		}
	}
	fb.ended = true
	st.finish()
}

// writeHead queues the answer's HEADERS (fb.mu held).
func (fb *h2Fallback) writeHead(hd *h2Head, end bool) {
	st := fb.st
	st.conn.enc.WriteField(hpack.HeaderField{Name: ":status", Value: strconv.Itoa(hd.status)})
	fb.writeFields(hd.header, http.TrailerPrefix)
	st.conn.writeHeaders(st.id, end)
	if end {
		st.localDone = true
	}
}

// writeFields encodes h's fields, but those HTTP/2 does not carry and
// those whose names begin with skip (when not empty).
func (fb *h2Fallback) writeFields(h http.Header, skip string) {
	enc := fb.st.conn.enc
	for k, vs := range h {
		lk := strings.ToLower(k)
		if h2HopFields[lk] || skip != "" && strings.HasPrefix(k, skip) || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range vs {
			if httpguts.ValidHeaderFieldValue(v) {
				enc.WriteField(hpack.HeaderField{Name: lk, Value: v})
			}
		}
	}
}

// h2Body is a handler's request body.
type h2Body struct{ fb *h2Fallback }

func (b h2Body) Read(p []byte) (int, error) {
	fb := b.fb
	fb.mu.Lock()
	if fb.expect {
		// The handler wants the body: ask for it (RFC 9110 10.1.1), as
		// net/http's servers do at the first read.
		fb.expect = false
		fb.infos = append(fb.infos, h2Head{status: http.StatusContinue, header: http.Header{}})
		fb.postLocked()
	}
	for len(fb.in) == 0 && !fb.inEnd && fb.dead == nil && !fb.closed {
		fb.cond.Wait()
	}
	if fb.closed {
		fb.mu.Unlock()
		return 0, errBodyClosed
	}
	if len(fb.in) > 0 {
		n := copy(p, fb.in)
		fb.in = fb.in[n:]
		fb.mu.Unlock()
		fb.l.post(func() {
			if st := fb.st; !st.conn.done {
				st.grant(int64(n))
			}
		})
		return n, nil
	}
	err := fb.dead
	fb.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return 0, io.EOF
}

// errBodyClosed is a read of a request body after its Close.
var errBodyClosed = errors.New("http2: request body closed by the handler")

// Close ends the body's reads, a read waiting included.
func (b h2Body) Close() error {
	fb := b.fb
	fb.mu.Lock()
	fb.closed = true
	fb.cond.Broadcast()
	fb.mu.Unlock()
	return nil
}

// h2Writer is a handler's http.ResponseWriter over its stream.
type h2Writer struct {
	fb     *h2Fallback
	h      http.Header
	status int
}

func (w *h2Writer) Header() http.Header { return w.h }

// WriteHeader queues the answer's head, or before it an informational
// one (1xx with the header as it is now, as net/http's servers send it;
// 101 has no place in HTTP/2 and is dropped).
func (w *h2Writer) WriteHeader(code int) {
	if w.status != 0 || code < 100 || code == http.StatusSwitchingProtocols {
		return
	}
	fb := w.fb
	fb.mu.Lock()
	defer fb.mu.Unlock()
	if code < 200 {
		if code == http.StatusContinue {
			fb.expect = false // sent now: not again at the first read
		}
		fb.infos = append(fb.infos, h2Head{status: code, header: w.h.Clone()})
	} else {
		w.status = code
		fb.expect = false // answered without the body
		fb.head = &h2Head{status: code, header: w.h.Clone()}
	}
	fb.postLocked()
}

func (w *h2Writer) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	fb := w.fb
	fb.mu.Lock()
	defer fb.mu.Unlock()
	for len(fb.out) >= h2FallbackBuf && fb.dead == nil {
		fb.cond.Wait()
	}
	if fb.dead != nil {
		return 0, fb.dead
	}
	fb.out = append(fb.out, p...)
	fb.postLocked()
	return len(p), nil
}

// Flush is http.Flusher: what was written is framed at once anyway.
func (w *h2Writer) Flush() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
}

// finish ends the answer when the handler returns: the trailers it set
// go last.
func (w *h2Writer) finish() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	var trail http.Header
	for _, v := range w.h["Trailer"] {
		for _, k := range strings.Split(v, ",") {
			k = http.CanonicalHeaderKey(strings.TrimSpace(k))
			if vs, ok := w.h[k]; ok && k != "" {
				if trail == nil {
					trail = http.Header{}
				}
				trail[k] = vs
			}
		}
	}
	for k, vs := range w.h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			if trail == nil {
				trail = http.Header{}
			}
			trail[strings.TrimPrefix(k, http.TrailerPrefix)] = vs
		}
	}
	fb := w.fb
	fb.mu.Lock()
	fb.fin, fb.trail = true, trail
	fb.postLocked()
	fb.mu.Unlock()
}
