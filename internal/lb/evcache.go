package lb

import (
	"net/http"
	"time"

	"github.com/shoal-dev/shoal/internal/h1"
)

// The asset cache on the fast path (the rule and the store are in
// cache.go, the net/http path's side in cachehttp.go). A hit is written
// from the loop: the head into c.wb, the entry's body (never changed
// once stored) as c.tail, without a copy. A request whose key another
// request is fetching waits without blocking the loop: the fetch's end
// posts a task that looks again (cacheWaitEnd), and the connection's
// deadline bounds the wait (cacheLockWait).

// cacheRequest reads the cache's request facts from the parsed head.
func (c *evClient) cacheRequest() (q cacheRequest) {
	head := c.buf[c.r:]
	h := &c.h
	q.method = bstr(head, h.Method)
	if q.method != http.MethodGet && q.method != http.MethodHead {
		return q
	}
	for _, sp := range h.Fields[:h.NFields] {
		name, val := h1.SplitField(head[sp.Start:sp.End])
		q.readField(bstrOf(name), bstrOf(val))
	}
	if sp := h.AcceptEncoding; sp.End != 0 {
		var a acceptEncoding
		a.add(bstr(head, sp))
		q.accept = a.choose()
	}
	return q
}

// cacheLookup looks the request up in its route's cache: a hit is
// served (or a wait for another request's fetch begun) and it reports
// true; on a miss it reports false and the request goes to the target,
// fetching for the cache when lead. mayWait is false when the request
// waited once already.
func (c *evClient) cacheLookup(mayWait bool) bool {
	ex := &c.ex
	ac := ex.route.cache
	q := c.cacheRequest()
	if !q.usesCache() {
		return false
	}
	head := c.buf[c.r:]
	c.ckey = appendCacheKey(c.ckey[:0], bstr(head, c.h.Host), bstr(head, c.h.Target))
	gen := ex.route.pool.p.ReleaseGeneration()
	e, fill, lead := ac.lookup(bstrOf(c.ckey), gen, time.Now(), mayWait, q.auth)
	switch {
	case e != nil:
		c.serveCached(ac, e, &q)
		return true
	case fill != nil && !lead:
		c.waitTok++
		tok, l := c.waitTok, c.l
		c.waiting = true
		c.dl = l.now + cacheLockWait
		ac.wait(fill, func() {
			l.post(func() {
				if c.waiting && c.waitTok == tok && c.state == csBusy {
					c.cacheWaitEnd()
				}
			})
		})
		return true
	}
	ex.cached = cacheMiss
	if lead {
		ex.fill, ex.fillAC = fill, ac
	}
	return false
}

// cacheWaitEnd goes on with a request that waited for another's fetch
// (it ended, or the wait timed out): served from the cache now, or sent
// to the target.
func (c *evClient) cacheWaitEnd() {
	c.waiting, c.dl = false, 0
	if !c.cacheLookup(false) {
		c.forward()
	}
}

// serveCached writes answer e to the client.
func (c *evClient) serveCached(ac *assetCache, e *cacheEntry, q *cacheRequest) {
	ex := &c.ex
	ex.cached = cacheHit
	a := ac.answer(e, q, ex.route.compress, time.Now())
	o := c.wb[:0]
	if a.status == http.StatusNotModified {
		o = append(o, "HTTP/1.1 304 Not Modified\r\n"...)
	} else {
		o = append(o, "HTTP/1.1 200 OK\r\n"...)
	}
	cachedFields(e, &a, func(_, name, value string) {
		o = append(o, name...)
		o = append(o, ": "...)
		o = append(o, value...)
		o = append(o, "\r\n"...)
	})
	o = append(o, "X-Request-Id: "...)
	o = append(o, ex.id...)
	o = append(o, "\r\n"...)
	if ex.closeAfter {
		o = append(o, "Connection: close\r\n"...)
	}
	o = append(o, "\r\n"...)
	c.wb, c.wo, c.tail = o, 0, a.body
	ex.status = a.status
	ex.bytesOut = int64(len(a.body))
	if a.body != nil {
		ex.bodyIn = int64(len(e.body[EncIdentity]))
	}
	c.started, c.respDone, c.status = true, true, a.status
	c.flush()
}

// cacheHead decides with cacheFor, from the target's head p (parsed in
// rh), whether the answer of a request that fetches for the cache is
// stored: if so the entry to fill is set up in c.capture, else the fetch
// ends at once. It appends the cache status to the client's head o.
func (c *evClient) cacheHead(p []byte, rh *h1.Response, o []byte) []byte {
	ex := &c.ex
	if ex.cached == cacheMiss {
		o = append(o, cacheStatusField+": MISS\r\n"...)
	}
	c.capture = nil
	if ex.fill == nil {
		return o
	}
	head := c.buf[c.r:]
	f := newCacheFacts()
	f.get, f.status, f.length = bstr(head, c.h.Method) == http.MethodGet, rh.Status, rh.ContentLength
	f.ranged = rh.Chunked // only a Content-Length body is stored
	q := c.cacheRequest()
	f.auth = q.auth
	for _, sp := range rh.Fields[:rh.NFields] {
		name, val := h1.SplitField(p[sp.Start:sp.End])
		f.readField(bstrOf(name), bstrOf(val))
	}
	fresh, ok := cacheFor(&f, ex.fillAC.maxEntry)
	if !ok {
		ex.fill.refused = true
		ex.endFill(nil)
		return o
	}
	e := newEntry(ex.fill.key, ex.fill.gen, time.Now(), fresh, &f)
	for _, sp := range rh.Fields[:rh.NFields] {
		name, val := h1.SplitField(p[sp.Start:sp.End])
		e.addField(string(name), string(val))
	}
	e.body[EncIdentity] = make([]byte, 0, f.length)
	c.capture = e
	return o
}

// captureBody adds the target's body bytes to the entry being filled;
// when the body is complete the entry is stored.
func (c *evClient) captureBody(body []byte, done bool) {
	e := c.capture
	if e == nil {
		return
	}
	e.body[EncIdentity] = append(e.body[EncIdentity], body...)
	if done {
		c.capture = nil
		if len(e.body[EncIdentity]) == cap(e.body[EncIdentity]) {
			c.ex.endFill(e)
		} else {
			c.ex.endFill(nil)
		}
	}
}

// endCache ends what the exchange holds of the cache: a fetch not ended
// (nothing stored), a wait, the hit's body.
func (c *evClient) endCache() {
	if c.evReq != nil {
		c.ex.endFill(nil)
	}
	c.capture, c.waiting, c.tail = nil, false, nil
}
