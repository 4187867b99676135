package lb

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-dev/shoal/internal/h1"
	"github.com/shoal-dev/shoal/internal/netpoll"
	"github.com/shoal-dev/shoal/internal/pool"
)

// frontHandler is the http.Handler of one listener.
type frontHandler struct {
	b    *Balancer
	name string // listener name: selects the router
	tls  bool
	lm   *listenerMetrics
}

// connKey is the context key of a request's *connInfo (withConn, rtt.go).
type connKey struct{}

// exchange is the state of one client request, for the proxy, the access
// log and metrics.
type exchange struct {
	listener   string
	rerouted   bool
	start      time.Time
	id         string
	route      *route
	target     string
	status     int
	bytesOut   int64
	ttfb       time.Duration
	retries    int
	err        error
	closeAfter bool
	websocket  bool
	// grpc: the request is a gRPC call (isGRPC); the balancer's own
	// answers go to it as grpc-status.
	grpc bool
	// held: the server holds the exchange open on purpose (heldOpen);
	// heldPool is the pool whose open-held gauge counts it.
	held     bool
	heldPool *poolMetrics
	logged   bool // finish already ran
	// idBorrowed: id views a connection's buffer (fast path) and must be
	// copied before anything keeps it.
	idBorrowed bool
	// wrote is when the request (head) was written to the final target,
	// headers when its response headers arrived; zero when not reached.
	wrote, headers time.Time
	// Request facts for the access log and the observer, filled by
	// finish (net/http path) or, when wantsInfo, by the fast path.
	method, host, path, remote string
	// lm is the listener's series; rtt the client connection's
	// round-trip time when the exchange ended (rtt.go), zero if unknown.
	lm  *listenerMetrics
	rtt netpoll.RTT
	// The asset cache's part (cache.go): cached is cacheHit or cacheMiss
	// once looked up; fill is the fetch of the key this exchange makes
	// (fillAC its cache), ended by endFill on every way out; bodyIn
	// counts the answer's body bytes before compression.
	cached uint8
	fill   *cacheFill
	fillAC *assetCache
	bodyIn int64
}

// The values of exchange.cached.
const (
	cacheNone = iota // not looked up
	cacheMiss
	cacheHit
	cacheStored // a miss whose answer the cache stored
)

// cacheResults are RequestRecord.Cache's values, by exchange.cached.
var cacheResults = [...]string{cacheNone: "", cacheMiss: "miss", cacheHit: "hit", cacheStored: "stored"}

// endFill ends the exchange's fetch for the cache, if it makes one,
// storing e (nil: nothing stored) and releasing the requests that wait.
func (ex *exchange) endFill(e *cacheEntry) {
	if ex.fill != nil {
		if e != nil {
			ex.cached = cacheStored
		}
		ex.fillAC.endFill(ex.fill, e, ex.route.pool.p.ReleaseGeneration())
		ex.fill, ex.fillAC = nil, nil
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (h *frontHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b := h.b
	b.handlers.Add(1)
	defer b.handlers.Done()
	ex := &exchange{start: time.Now(), listener: h.name, lm: h.lm, grpc: isGRPC(r)}
	defer b.finish(ex, r)

	headTooLarge := false
	if g, ok := connOf(r.Context()).guarded(); ok {
		g.served++
		if n := g.tainted.Load(); n != 0 && g.served >= n {
			// Content-Length and Transfer-Encoding together: the body was
			// read by Transfer-Encoding alone; never reuse this connection.
			ex.closeAfter = true
		}
		// net/http reads up to 4 KiB past its limit; the guard counted
		// the head's bytes exactly.
		if n := g.oversize.Load(); n != 0 && g.served >= n {
			headTooLarge = true
		}
	}
	id := ""
	if v := r.Header["X-Request-Id"]; len(v) == 1 && validRequestID(v[0]) {
		id = v[0]
	} else {
		id = b.ids.next()
	}
	ex.id = id
	idv := []string{id} // shared by the request and the response header
	wh := w.Header()
	wh["X-Request-Id"] = idv

	tbl := b.tbl.Load()
	lim := tbl.limits
	_, hasUpgrade := r.Header["Upgrade"]
	wsConnect := isWebSocketConnect(r)
	if wsConnect {
		// Forwarded as an HTTP/1.1 Upgrade (h2ws.go).
		delete(r.Header, ":protocol")
	}
	if hasUpgrade {
		// The guard stopped inspecting this connection at the Upgrade
		// header; unless it becomes a tunnel it must not be reused.
		ex.closeAfter = true
	}
	switch {
	case !h1.ValidMethod(r.Method):
		// net/http refuses other methods on HTTP/1.1, but its HTTP/2
		// server passes any :method on, so the proxy checks it itself.
		ex.closeAfter = true
		b.fail(w, ex, errBadMethod)
		return
	case headTooLarge:
		ex.closeAfter = true
		b.fail(w, ex, errHeadTooLarge)
		return
	case requestLineLen(r) > lim.MaxRequestLine:
		b.fail(w, ex, errRequestLineTooLong)
		return
	case len(r.RequestURI) > lim.MaxURIBytes:
		b.fail(w, ex, errURITooLong)
		return
	case r.Method == http.MethodConnect && !wsConnect:
		ex.closeAfter = true
		b.fail(w, ex, errMethod)
		return
	}
	if ka, ok := b.challengeAnswer(r.Method, r.URL.Path); ok {
		// HTTP-01 (RFC 8555 8.3): before maintenance and routing, so a
		// certificate is obtained or renewed whatever the routes say.
		ex.status = http.StatusOK
		if ex.closeAfter {
			wh["Connection"] = []string{"close"}
		}
		wh["Content-Type"] = []string{"text/plain"}
		wh["Cache-Control"] = []string{"no-store"}
		wh["Content-Length"] = []string{strconv.Itoa(len(ka))}
		w.WriteHeader(ex.status)
		if r.Method != http.MethodHead {
			n, _ := io.WriteString(w, ka)
			ex.bytesOut = int64(n)
		}
		return
	}
	if m := b.maint.Load(); m != nil {
		ex.status = http.StatusServiceUnavailable
		if ex.closeAfter {
			wh["Connection"] = []string{"close"}
		}
		wh["Retry-After"] = []string{strconv.Itoa(durationSeconds(m.RetryAfter))}
		wh["Content-Type"] = []string{"text/html; charset=utf-8"}
		wh["Cache-Control"] = []string{"no-store"}
		w.WriteHeader(ex.status)
		n, _ := io.WriteString(w, m.Page)
		ex.bytesOut = int64(n)
		return
	}
	rt := tbl.routers[h.name].match(r.Host, r.URL.Path)
	if rt == nil {
		b.fail(w, ex, errNoRoute)
		return
	}
	ex.route = rt
	if lim.MaxBodyBytes > 0 && !wsConnect { // a WebSocket's stream is no body
		if r.ContentLength > lim.MaxBodyBytes {
			ex.closeAfter = true
			b.fail(w, ex, &http.MaxBytesError{Limit: lim.MaxBodyBytes})
			return
		}
		if r.ContentLength != 0 {
			r.Body = http.MaxBytesReader(w, r.Body, lim.MaxBodyBytes)
		}
	}

	upgrade := hasUpgrade && r.ProtoMajor == 1 && upgradeRequested(r.Header) || wsConnect
	// Build the outgoing header in place: the request is ours.
	hdr := r.Header
	var upg []string
	if upgrade {
		upg = hdr["Upgrade"]
	}
	te := hdr["Te"]
	removeHopHeaders(hdr)
	if rt.pool.cfg.Protocol.http2() {
		keepTE(te, hdr)
	}
	client := remoteAddr(r.RemoteAddr)
	proto := "http"
	if h.tls {
		proto = "https"
	}
	setForwarded(hdr, client, trusted(tbl.trusted, client), r.Host, proto)
	hdr["X-Request-Id"] = idv
	if _, ok := hdr["User-Agent"]; !ok {
		hdr["User-Agent"] = []string{""} // keep Go from adding its own
	}
	if upgrade {
		hdr["Connection"] = []string{"Upgrade"}
		hdr["Upgrade"] = upg
		if wsConnect {
			webSocketUpgradeHeader(hdr)
		}
		b.serveUpgrade(w, r, ex, tbl)
		return
	}
	b.proxy(w, r, ex, tbl)
}

// upgradeRequested reports whether the request asks for a protocol
// upgrade other than h2c (which is never forwarded: RFC 9113 removed it,
// and a target that accepted it would speak HTTP/2 on a connection the
// balancer parses as HTTP/1.1).
func upgradeRequested(h http.Header) bool {
	if !headerHasToken(h["Connection"], "upgrade") {
		return false
	}
	for _, v := range h["Upgrade"] {
		for _, p := range strings.Split(v, ",") {
			p = strings.TrimSpace(p)
			if p != "" && !strings.EqualFold(p, "h2c") {
				return true
			}
		}
	}
	return false
}

func headerHasToken(vals []string, token string) bool {
	for _, v := range vals {
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), token) {
				return true
			}
		}
	}
	return false
}

func remoteAddr(s string) netip.Addr {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.IPv4Unspecified()
	}
	return ap.Addr().Unmap()
}

func trusted(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// trackBody passes a client body to the transport, recording whether it
// was touched and the client's read error, and ignoring Close, so that a
// request whose body was never touched can be retried with the same body.
// The transport reads it from its own goroutine, hence atomics.
type trackBody struct {
	rc   io.ReadCloser
	used atomic.Bool
	err  atomic.Pointer[error] // a read error other than io.EOF
}

func (t *trackBody) Read(p []byte) (int, error) {
	t.used.Store(true)
	n, err := t.rc.Read(p)
	if err != nil && err != io.EOF {
		t.err.CompareAndSwap(nil, &err)
	}
	return n, err
}

func (t *trackBody) Close() error { return nil }

// clientErr returns the error reading the client's body, if any.
func (t *trackBody) clientErr() error {
	if t == nil {
		return nil
	}
	if p := t.err.Load(); p != nil {
		return *p
	}
	return nil
}

// proxy forwards a plain request with retries and streams the response.
func (b *Balancer) proxy(w http.ResponseWriter, r *http.Request, ex *exchange, tbl *table) {
	pe := ex.route.pool
	if heldOpen(ex.route, r.Method, r.URL.Path, r.URL.RawQuery, "") {
		ex.hold()
	}
	defer ex.endFill(nil)
	if b.serveFromCache(w, r, ex) {
		return
	}
	hasBody := r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody
	var body *trackBody
	if hasBody {
		body = &trackBody{rc: r.Body}
	}
	tbl.budget.deposit()
	var tried []*pool.Target
	maxTries := 1 + pe.cfg.Retries
	for try := 0; ; try++ {
		k := pe.p.RequestKey(r)
		choice, err := pe.p.Pick(&k, tried)
		if err != nil {
			if nt := b.reroute(ex, r.Host, r.URL.Path, tbl); nt != nil {
				tbl, pe, tried = nt, ex.route.pool, nil
				try--
				continue
			}
			if ex.err == nil || try == 0 {
				ex.err = err
			}
			b.fail(w, ex, ex.err)
			return
		}
		t := choice.Target
		ex.target = t.Addr()
		resp, ttfb, cancel, err := b.roundTrip(w, r, ex, pe, t, body)
		if err != nil {
			cancel()
			if cerr := body.clientErr(); cerr != nil {
				// The client's body was bad (framing, size) or cut: not
				// the target's fault and never retried.
				t.End(pool.Outcome{})
				ex.closeAfter = true
				b.fail(w, ex, clientBodyError{cerr})
				return
			}
			clientGone := r.Context().Err() != nil
			b.log.Debug("attempt failed", "request_id", ex.id, "pool", pe.cfg.Name, "target", ex.target, "try", try+1, "error", err)
			if clientGone {
				t.End(pool.Outcome{})
			} else {
				t.End(pool.Outcome{ConnErr: true})
			}
			ex.err = err
			// A body streams from the client: it can be sent again only
			// while untouched.
			replayable := body == nil || !body.used.Load()
			if clientGone || !mayRetry(err, r.Method, body != nil, replayable, try, maxTries, tbl.budget) {
				b.fail(w, ex, err)
				return
			}
			tried = append(tried, t)
			ex.retries++
			pe.m.retries.Inc()
			continue
		}
		ex.err = nil
		ex.ttfb = ttfb
		b.writeResponse(w, r, ex, resp, choice.Cookie)
		cancel()
		t.End(pool.Outcome{Status: resp.StatusCode, TTFB: ttfb})
		if ex.err != nil && !errors.Is(ex.err, errClientWrite) {
			// The response was cut mid-body; make net/http close the
			// client connection (HTTP/1) or reset the stream (HTTP/2).
			b.finish(ex, r)
			ex.logged = true
			panic(http.ErrAbortHandler)
		}
		return
	}
}

// reroute handles a request that found no target because a reload
// retired its pool between routing and picking: once per request, it
// routes again on the current table. It returns nil when that does not
// apply.
func (b *Balancer) reroute(ex *exchange, host, path string, tbl *table) *table {
	if ex.rerouted {
		return nil
	}
	nt := b.tbl.Load()
	if nt == tbl {
		return nil
	}
	rt := nt.routers[ex.listener].match(host, path)
	if rt == nil {
		return nil
	}
	ex.rerouted = true
	ex.route = rt
	return nt
}

// roundTrip makes one attempt on t. The returned cancel must be called
// once the response body is done (or on error).
func (b *Balancer) roundTrip(w http.ResponseWriter, r *http.Request, ex *exchange, pe *poolEntry, t *pool.Target, body *trackBody) (*http.Response, time.Duration, func(), error) {
	ctx, cancel := context.WithCancelCause(r.Context())
	ex.wrote, ex.headers = time.Time{}, time.Time{}
	inform := newInformRelay(w, r)
	trace := &httptrace.ClientTrace{Got1xxResponse: inform.got}
	var wrote *atomic.Int64 // unix nanos; set by the transport's writer goroutine
	if b.obs.Load() != nil {
		// Only an observer pays for the hook that splits queueing and
		// connecting from waiting on the target.
		wrote = new(atomic.Int64)
		trace.WroteRequest = func(httptrace.WroteRequestInfo) { wrote.CompareAndSwap(0, time.Now().UnixNano()) }
	}
	ctx = httptrace.WithClientTrace(ctx, trace)
	// A drain deadline on the target ends this request.
	stop := context.AfterFunc(t.Context(), func() { cancel(pool.ErrDrainDeadline) })
	out := r.WithContext(ctx)
	u := *r.URL
	u.Scheme = pe.scheme()
	u.Host = t.Addr()
	out.URL = &u
	out.RequestURI = ""
	out.Close = false
	out.Proto, out.ProtoMajor, out.ProtoMinor = "HTTP/1.1", 1, 1
	out.TransferEncoding = nil
	if body != nil {
		out.Body = body
	} else {
		out.Body = nil
		out.ContentLength = 0
	}
	t.Begin()
	start := time.Now()
	resp, err := pe.tr.RoundTrip(out)
	inform.stop()
	now := time.Now()
	ttfb := now.Sub(start)
	done := func() { stop(); cancel(nil) }
	if err != nil {
		if c := context.Cause(ctx); errors.Is(c, pool.ErrDrainDeadline) {
			err = c
		}
		return nil, ttfb, done, err
	}
	pe.m.ttfb.Observe(ttfb.Seconds())
	ex.wrote = start
	if wrote != nil {
		if ns := wrote.Load(); ns != 0 {
			ex.wrote = time.Unix(0, ns)
		}
	}
	ex.headers = now
	return resp, ttfb, done, nil
}

var errClientWrite = errors.New("client went away")

// writeResponse copies resp to the client, flushing as data arrives.
func (b *Balancer) writeResponse(w http.ResponseWriter, r *http.Request, ex *exchange, resp *http.Response, cookie *http.Cookie) {
	defer resp.Body.Close()
	rh := resp.Header
	removeHopHeaders(rh)
	wh := w.Header()
	for k, v := range rh {
		if k == "X-Request-Id" {
			continue
		}
		wh[k] = v
	}
	if _, ok := wh["Content-Length"]; !ok && resp.ContentLength >= 0 && !bodyless(r.Method, resp.StatusCode) {
		wh["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
	}
	if cookie != nil {
		if v := cookie.String(); v != "" {
			wh["Set-Cookie"] = append(wh["Set-Cookie"][:len(wh["Set-Cookie"]):len(wh["Set-Cookie"])], v)
		}
	}
	// The answer filter: the one place where the net/http path changes
	// an answer's head and body (compression; compress.go).
	enc := b.compressHeader(r, ex, resp, wh)
	capture := cacheCapture(r, ex, resp)
	if ex.cached == cacheMiss {
		wh[cacheStatusField] = []string{"MISS"}
	}
	// Trailers the target announced are announced to the client; others
	// (an HTTP/2 target need not announce them: gRPC's grpc-status) are
	// sent with http.TrailerPrefix once the body ended.
	var announced map[string]bool
	if len(resp.Trailer) > 0 {
		announced = make(map[string]bool, len(resp.Trailer))
		keys := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			keys = append(keys, k)
			announced[k] = true
		}
		wh["Trailer"] = []string{strings.Join(keys, ", ")}
	}
	if ex.closeAfter {
		wh["Connection"] = []string{"close"}
	}
	ex.status = resp.StatusCode
	if ct := rh["Content-Type"]; !ex.held && len(ct) > 0 && heldOpen(ex.route, r.Method, r.URL.Path, r.URL.RawQuery, ct[0]) {
		ex.hold()
	}
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	if ex.route.pool.cfg.Protocol.http2() {
		// A gRPC server may send its head long before the first message
		// (or a client may wait for it before sending): relay it now.
		rc.Flush()
	}

	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var out io.Writer = w
	var z encoder
	if enc != EncIdentity {
		cw := &countWriter{w: w}
		level := ex.route.compress.level
		z = getEncoder(enc, level, cw)
		defer func() {
			putEncoder(enc, level, z)
			ex.bytesOut = cw.n
		}()
		out = z
	}
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			ex.bodyIn += int64(n)
			if capture != nil {
				capture.body[EncIdentity] = append(capture.body[EncIdentity], buf[:n]...)
			}
			m, werr := out.Write(buf[:n])
			if z == nil {
				ex.bytesOut += int64(m)
			}
			if werr != nil {
				ex.err = errClientWrite
				return
			}
			// Flush when the target has nothing more buffered, so that
			// events, long polls and streams reach the client at once
			// (through the compressor too); a body that ended with this
			// read is flushed on return. A flush error is the client's:
			// the next Write reports it.
			if rerr == nil && n < len(buf) {
				if z != nil && z.Flush() != nil {
					ex.err = errClientWrite
					return
				}
				rc.Flush()
			}
		}
		if rerr == io.EOF {
			if capture != nil && int64(len(capture.body[EncIdentity])) == resp.ContentLength {
				ex.endFill(capture)
			}
			break
		}
		if rerr != nil {
			ex.err = rerr
			return
		}
	}
	if z != nil {
		// The compressed body ends here (it announced no trailers).
		if z.Close() != nil {
			ex.err = errClientWrite
		}
		return
	}
	for k, v := range resp.Trailer {
		if announced[k] {
			wh[k] = v
		} else {
			wh[http.TrailerPrefix+k] = v
		}
	}
}

// countWriter counts the bytes written through it (a compressed body's).
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// compressHeader applies the route's compression rule (compressFor) to
// the answer whose header is being built in wh from resp, and returns the
// coding its body is compressed with (EncIdentity for none).
func (b *Balancer) compressHeader(r *http.Request, ex *exchange, resp *http.Response, wh http.Header) Encoding {
	rule := ex.route.compress
	if rule.off {
		return EncIdentity
	}
	ct := wh["Content-Type"]
	if len(ct) == 0 || !rule.compressible(ct[0]) {
		return EncIdentity
	}
	var accept acceptEncoding
	for _, v := range r.Header["Accept-Encoding"] {
		accept.add(v)
	}
	_, upgrade := r.Header["Upgrade"]
	f := answerFacts{
		head: r.Method == http.MethodHead, upgrade: upgrade, status: resp.StatusCode, contentType: ct[0],
		encoded: len(wh["Content-Encoding"]) > 0, ranged: len(wh["Content-Range"]) > 0, length: resp.ContentLength,
		trailers: len(resp.Trailer) > 0,
	}
	for _, v := range wh["Cache-Control"] {
		f.noTransform = f.noTransform || hasToken(v, "no-transform")
	}
	for _, v := range wh["Vary"] {
		f.varies = f.varies || varyCovers(v)
	}
	enc, vary := rule.compressFor(accept.choose(), &f)
	if vary {
		v := wh["Vary"]
		wh["Vary"] = append(v[:len(v):len(v)], "Accept-Encoding")
	}
	if enc == EncIdentity {
		return enc
	}
	delete(wh, "Content-Length")
	wh["Content-Encoding"] = []string{enc.String()}
	if et := wh["Etag"]; len(et) > 0 {
		if prefix, keep := weakETag(et[0]); keep {
			wh["Etag"] = []string{prefix + et[0]}
		} else {
			delete(wh, "Etag")
		}
	}
	return enc
}

func bodyless(method string, status int) bool {
	return method == http.MethodHead || status == http.StatusNoContent || status == http.StatusNotModified || status < 200
}
