package lb

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/shoal-dev/shoal/internal/pool"
)

// goAwayGrace is how long a tunnel being closed waits for a WebSocket
// frame in progress to complete before the connections are cut.
const goAwayGrace = time.Second

// closeGoingAway is the WebSocket close status 1001 (RFC 6455 7.4.1).
const closeGoingAway = 1001

// serveUpgrade tunnels an Upgrade request (WebSocket, or any protocol but
// h2c) to a target: it dials (retrying other targets on connect errors),
// sends the request, and on 101 hijacks the client connection and copies
// both ways until either side closes, the target's drain deadline passes,
// or the balancer shuts down. Other answers are relayed as responses.
// A WebSocket over an HTTP/2 stream (RFC 8441 extended CONNECT; h2ws.go)
// goes the same way, its stream taking the place of the hijacked
// connection.
func (b *Balancer) serveUpgrade(w http.ResponseWriter, r *http.Request, ex *exchange, tbl *table) {
	pe := ex.route.pool
	ex.websocket = true
	h2 := r.ProtoMajor == 2 // ServeHTTP sends only an extended CONNECT on HTTP/2
	rc := http.NewResponseController(w)
	tbl.budget.deposit()
	var (
		tried  []*pool.Target
		t      *pool.Target
		conn   net.Conn
		cookie *http.Cookie
	)
	d := net.Dialer{Timeout: pe.cfg.ConnectTimeout}
	for try := 0; ; try++ {
		k := pe.p.RequestKey(r)
		choice, err := pe.p.Pick(&k, tried)
		if err != nil {
			if nt := b.reroute(ex, r.Host, r.URL.Path, tbl); nt != nil {
				tbl, pe, tried = nt, ex.route.pool, nil
				d.Timeout = pe.cfg.ConnectTimeout
				try--
				continue
			}
			if ex.err == nil {
				ex.err = err
			}
			b.fail(w, ex, ex.err)
			return
		}
		t, cookie = choice.Target, choice.Cookie
		ex.target = t.Addr()
		t.Begin()
		conn, err = pe.dialTunnel(r.Context(), &d, t.Addr())
		if err == nil {
			break
		}
		t.End(pool.Outcome{ConnErr: r.Context().Err() == nil})
		ex.err = &dialError{err}
		if r.Context().Err() != nil || !mayRetry(ex.err, r.Method, false, true, try, 1+pe.cfg.Retries, tbl.budget) {
			b.fail(w, ex, ex.err)
			return
		}
		tried = append(tried, t)
		ex.retries++
		pe.m.retries.Inc()
	}

	out := r.WithContext(r.Context())
	u := *r.URL
	u.Scheme, u.Host = "http", t.Addr()
	out.URL = &u
	out.RequestURI = ""
	out.Proto, out.ProtoMajor, out.ProtoMinor = "HTTP/1.1", 1, 1
	out.Close = false
	if h2 {
		// The stream's DATA is the tunnel, not a body.
		out.Method, out.Body, out.ContentLength = http.MethodGet, nil, 0
	}
	start := time.Now()
	if pe.cfg.TryTimeout > 0 {
		conn.SetDeadline(start.Add(pe.cfg.TryTimeout))
	}
	tbr := bufio.NewReader(conn)
	var resp *http.Response
	err := out.Write(conn)
	if err == nil {
		ex.wrote = time.Now()
		resp, err = http.ReadResponse(tbr, out)
	}
	ttfb := time.Since(start)
	ex.ttfb = ttfb
	if err != nil {
		conn.Close()
		t.End(pool.Outcome{ConnErr: true})
		b.fail(w, ex, err)
		return
	}
	conn.SetDeadline(time.Time{})
	ex.headers = time.Now()
	pe.m.ttfb.Observe(ttfb.Seconds())
	if h2 && resp.StatusCode == http.StatusSwitchingProtocols && !webSocketAccepted(out.Header, resp.Header) {
		conn.Close()
		t.End(pool.Outcome{Status: http.StatusBadGateway, TTFB: ttfb})
		b.fail(w, ex, errWebSocketAccept)
		return
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b.writeResponse(w, r, ex, resp, cookie)
		conn.Close()
		t.End(pool.Outcome{Status: resp.StatusCode, TTFB: ttfb})
		return
	}
	if h2 {
		b.tunnel(webSocketStream(w, r, ex, resp, cookie), nil, conn, tunnelReader(tbr, conn), true, tbl, pe, t, pool.Outcome{Status: resp.StatusCode, TTFB: ttfb})
		return
	}

	cconn, cbrw, err := rc.Hijack()
	if err != nil {
		conn.Close()
		t.End(pool.Outcome{Status: resp.StatusCode, TTFB: ttfb})
		ex.err = err
		return
	}
	ex.status = http.StatusSwitchingProtocols
	// Relay the 101 head. Upgrade and Connection are the point of it.
	rh := resp.Header
	upgrade, connection := rh["Upgrade"], rh["Connection"]
	removeHopHeaders(rh)
	rh["Upgrade"], rh["Connection"] = upgrade, connection
	rh["X-Request-Id"] = []string{ex.id}
	if cookie != nil {
		rh["Set-Cookie"] = append(rh["Set-Cookie"], cookie.String())
	}
	cbrw.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	rh.Write(cbrw)
	cbrw.WriteString("\r\n")
	if err := cbrw.Flush(); err != nil {
		cconn.Close()
		conn.Close()
		t.End(pool.Outcome{Status: resp.StatusCode, TTFB: ttfb})
		ex.err = err
		return
	}
	ws := headerHasToken(upgrade, "websocket")
	b.tunnel(cconn, tunnelReader(cbrw.Reader, cconn), conn, tunnelReader(tbr, conn), ws, tbl, pe, t, pool.Outcome{Status: resp.StatusCode, TTFB: ttfb})
}

// tunnel copies between the client (read from clientR; nil: client
// itself) and the target connection until the tunnel ends, counted in
// the pool's WebSockets and the balancer's open tunnels (which shutdown
// closes), and closed at the target's drain deadline; then it ends the
// target's request with o.
func (b *Balancer) tunnel(client net.Conn, clientR io.Reader, target net.Conn, targetR io.Reader, ws bool, tbl *table, pe *poolEntry, t *pool.Target, o pool.Outcome) {
	if clientR == nil {
		clientR = client
	}
	tun := newTunnel(client, clientR, target, targetR, ws, tbl.limits.WebSocketIdle)
	if !b.tunnels.add(tun) {
		tun.goAway() // the balancer is past its shutdown deadline
	}
	pe.m.ws.Inc()
	stop := context.AfterFunc(t.Context(), tun.goAway)
	tun.run()
	stop()
	pe.m.ws.Dec()
	b.tunnels.remove(tun)
	t.End(o)
}

// tunnelReader returns the reader a tunnel copies from: the bytes br
// buffered, then c itself. A client connection handed over by the fast
// path is unwrapped where its layers have nothing left to do (the guard
// stops inspecting at an Upgrade request, the replayed prefix is
// consumed), so each read is one call to the socket rather than a chain
// through bufio, net/http's connReader, the guard and the prefix. Call it
// only once br and c are no longer read by anything else (after Hijack).
func tunnelReader(br *bufio.Reader, c net.Conn) io.Reader {
	if g, ok := c.(*guardConn); ok && g.ins.Passthrough() && g.err == nil {
		c = g.Conn
		if p, ok := c.(*prefixConn); ok && len(p.pre) == 0 {
			c = p.Conn
		}
	}
	n := br.Buffered()
	if n == 0 {
		return c
	}
	pre, _ := br.Peek(n)
	return &prefixConn{Conn: c, pre: append([]byte(nil), pre...)}
}
