package lb

import (
	"net/http"
	"time"
)

// The asset cache on the net/http path (the rule and the store are in
// cache.go, the fast path's side in evcache.go).

// serveFromCache looks the request up in its route's cache. It serves a
// hit and reports true. On a miss it reports false: the exchange then
// fetches the key for the cache (ex.fill) when no other request does;
// when one does, it first waits for that fetch (at most cacheLockWait, or
// until the client leaves) and looks again.
func (b *Balancer) serveFromCache(w http.ResponseWriter, r *http.Request, ex *exchange) bool {
	ac := ex.route.cache
	if ac == nil || ex.held || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		return false
	}
	q := cacheRequest{method: r.Method}
	for k, vs := range r.Header {
		for _, v := range vs {
			q.readField(k, v)
		}
	}
	if !q.usesCache() {
		return false
	}
	var accept acceptEncoding
	for _, v := range r.Header["Accept-Encoding"] {
		accept.add(v)
	}
	q.accept = accept.choose()
	key := string(appendCacheKey(nil, r.Host, r.RequestURI))
	gen := ex.route.pool.p.ReleaseGeneration()
	e, fill, lead := ac.lookup(key, gen, time.Now(), true, q.auth)
	if e == nil && fill != nil && !lead {
		done := make(chan struct{})
		ac.wait(fill, func() { close(done) })
		t := time.NewTimer(cacheLockWait)
		select {
		case <-done:
		case <-t.C:
		case <-r.Context().Done():
		}
		t.Stop()
		e, fill, lead = ac.lookup(key, gen, time.Now(), false, q.auth)
	}
	if e == nil {
		ex.cached = cacheMiss
		if lead {
			ex.fill, ex.fillAC = fill, ac
		}
		return false
	}
	ex.cached = cacheHit
	a := ac.answer(e, &q, ex.route.compress, time.Now())
	wh := w.Header()
	cachedFields(e, &a, func(canon, _, value string) {
		wh[canon] = append(wh[canon], value)
	})
	if ex.closeAfter {
		wh["Connection"] = []string{"close"}
	}
	ex.status = a.status
	w.WriteHeader(a.status)
	if a.body != nil {
		ex.bodyIn = int64(len(e.body[EncIdentity]))
		n, err := w.Write(a.body)
		ex.bytesOut = int64(n)
		if err != nil {
			ex.err = errClientWrite
		}
	}
	return true
}

// cacheCapture decides with cacheFor whether the answer resp of an
// exchange that fetches for the cache is stored; it returns the entry to
// fill with the body, or nil (and ends the fetch at once, so that the
// waiting requests go on).
func cacheCapture(r *http.Request, ex *exchange, resp *http.Response) *cacheEntry {
	if ex.fill == nil {
		return nil
	}
	f := newCacheFacts()
	f.get, f.status, f.length = r.Method == http.MethodGet, resp.StatusCode, resp.ContentLength
	f.trailers = len(resp.Trailer) > 0
	_, f.auth = r.Header["Authorization"]
	for k, vs := range resp.Header {
		for _, v := range vs {
			f.readField(k, v)
		}
	}
	fresh, ok := cacheFor(&f, ex.fillAC.maxEntry)
	if !ok {
		ex.fill.refused = true
		ex.endFill(nil)
		return nil
	}
	e := newEntry(ex.fill.key, ex.fill.gen, time.Now(), fresh, &f)
	for k, vs := range resp.Header {
		for _, v := range vs {
			e.addField(k, v)
		}
	}
	e.body[EncIdentity] = make([]byte, 0, f.length)
	return e
}
