package lb

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The asset cache end to end on both paths (cache.go): what each rule
// stores, what a hit carries, and the store's bounds.

const immutable = "public, max-age=31536000, immutable"

// cachingConfig is baseConfig, whose route caches by default.
func cachingConfig(targets ...string) Config {
	c := baseConfig(targets...)
	if c.Routes[0].Cache.Off {
		panic("baseConfig's route does not cache")
	}
	return c
}

// cacheReq sends one request (method, extra header lines) and returns
// the answer and its body.
func cacheReq(t *testing.T, addr, method, fields string) (*http.Response, []byte) {
	t.Helper()
	out := raw(t, addr, method+" /app.3f2a.js?v=1 HTTP/1.1\r\nHost: a\r\n"+fields+"Connection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(out)), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read response: %v in %q", err, out)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, body
}

// TestCacheRulesOnBothPaths: each rule of cacheFor, end to end: the same
// request twice, counting what reached the target and what the second
// answer says.
func TestCacheRulesOnBothPaths(t *testing.T) {
	body := textBody(40<<10, 2)
	for _, tc := range []struct {
		name    string
		header  map[string]string // answer fields the target sets
		chunked bool
		status  int
		route   Cache
		first   string // request fields of the first request
		second  string // ... and of the second
		method2 string // the second's method (GET)
		// fetches: how many requests reached the target; want2: the
		// second answer's status and X-Cache-Status.
		fetches  int64
		want2    int
		status2  string
		encoding string // the second's Content-Encoding
	}{
		{name: "immutable cached", header: map[string]string{"Cache-Control": immutable}, fetches: 1, want2: 200, status2: "HIT"},
		{name: "long max-age cached", header: map[string]string{"Cache-Control": "max-age=7200"}, fetches: 1, want2: 200, status2: "HIT"},
		{name: "short max-age passes", header: map[string]string{"Cache-Control": "public, max-age=600"}, fetches: 2, want2: 200, status2: "MISS"},
		{name: "s-maxage=0 wins", header: map[string]string{"Cache-Control": "max-age=31536000, s-maxage=0, immutable"}, fetches: 2, want2: 200, status2: "MISS"},
		{name: "no Cache-Control", fetches: 2, want2: 200, status2: "MISS"},
		{name: "private", header: map[string]string{"Cache-Control": "private, max-age=31536000, immutable"}, fetches: 2, want2: 200, status2: "MISS"},
		{name: "no-store", header: map[string]string{"Cache-Control": "no-store, max-age=31536000, immutable"}, fetches: 2, want2: 200, status2: "MISS"},
		{name: "no-cache", header: map[string]string{"Cache-Control": "no-cache, max-age=31536000"}, fetches: 2, want2: 200, status2: "MISS"},
		{name: "Set-Cookie", header: map[string]string{"Cache-Control": immutable, "Set-Cookie": "s=1"}, fetches: 2, want2: 200, status2: "MISS"},
		{name: "Vary Origin", header: map[string]string{"Cache-Control": immutable, "Vary": "Origin"}, fetches: 2, want2: 200, status2: "MISS"},
		{name: "Vary Accept-Encoding", header: map[string]string{"Cache-Control": immutable, "Vary": "Accept-Encoding"}, fetches: 1, want2: 200, status2: "HIT"},
		{name: "target encoded", header: map[string]string{"Cache-Control": immutable, "Content-Encoding": "deflate"}, fetches: 2, want2: 200, status2: "MISS"},
		{name: "chunked target", header: map[string]string{"Cache-Control": immutable}, chunked: true, fetches: 2, want2: 200, status2: "MISS"},
		{name: "404 not stored", header: map[string]string{"Cache-Control": immutable}, status: 404, fetches: 2, want2: 404, status2: "MISS"},
		{name: "Authorization private", header: map[string]string{"Cache-Control": "max-age=31536000, immutable"}, first: "Authorization: Bearer x\r\n", second: "Authorization: Bearer x\r\n", fetches: 2, want2: 200, status2: "MISS"},
		{name: "Authorization public", header: map[string]string{"Cache-Control": immutable}, first: "Authorization: Bearer x\r\n", second: "Authorization: Bearer y\r\n", fetches: 1, want2: 200, status2: "HIT"},
		{name: "stored without, asked with Authorization", header: map[string]string{"Cache-Control": "max-age=31536000, immutable"}, second: "Authorization: Bearer y\r\n", fetches: 2, want2: 200, status2: "MISS"},
		{name: "Range passes", header: map[string]string{"Cache-Control": immutable}, second: "Range: bytes=0-9\r\n", fetches: 2, want2: 206, status2: ""},
		{name: "HEAD from a GET's entry", header: map[string]string{"Cache-Control": immutable}, method2: "HEAD", fetches: 1, want2: 200, status2: "HIT"},
		{name: "If-None-Match 304", header: map[string]string{"Cache-Control": immutable, "ETag": `"v1"`}, second: "If-None-Match: \"x\", W/\"v1\"\r\n", fetches: 1, want2: 304, status2: "HIT"},
		{name: "If-None-Match differs", header: map[string]string{"Cache-Control": immutable, "ETag": `"v1"`}, second: "If-None-Match: \"v2\"\r\n", fetches: 1, want2: 200, status2: "HIT"},
		{name: "If-Modified-Since 304", header: map[string]string{"Cache-Control": immutable, "Last-Modified": "Tue, 01 Dec 2026 10:00:00 GMT"}, second: "If-Modified-Since: Tue, 01 Dec 2026 10:00:00 GMT\r\n", fetches: 1, want2: 304, status2: "HIT"},
		{name: "gzip form made from the entry", header: map[string]string{"Cache-Control": immutable, "ETag": `"v1"`}, second: "Accept-Encoding: gzip\r\n", fetches: 1, want2: 200, status2: "HIT", encoding: "gzip"},
		{name: "br form", header: map[string]string{"Cache-Control": immutable}, first: "Accept-Encoding: br\r\n", second: "Accept-Encoding: br\r\n", fetches: 1, want2: 200, status2: "HIT", encoding: "br"},
		{name: "route off", header: map[string]string{"Cache-Control": immutable}, route: Cache{Off: true}, fetches: 2, want2: 200, status2: ""},
		{name: "over max entry", header: map[string]string{"Cache-Control": immutable}, route: Cache{MaxEntryBytes: 1 << 10}, fetches: 2, want2: 200, status2: "MISS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			onBothPaths(t, func(t *testing.T, path servingPath, cfg func(Config) Config) {
				status := tc.status
				if status == 0 {
					status = 200
				}
				var fetches atomic.Int64
				be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
					fetches.Add(1)
					h := w.Header()
					h.Set("Content-Type", "text/javascript")
					for k, v := range tc.header {
						h.Set(k, v)
					}
					if r.Header.Get("Range") != "" {
						h.Set("Content-Range", fmt.Sprintf("bytes 0-9/%d", len(body)))
						h.Set("Content-Length", "10")
						w.WriteHeader(206)
						w.Write(body[:10])
						return
					}
					if !tc.chunked {
						h.Set("Content-Length", strconv.Itoa(len(body)))
					}
					w.WriteHeader(status)
					if r.Method == "HEAD" {
						return
					}
					if tc.chunked {
						w.Write(body[:100])
						w.(http.Flusher).Flush()
						w.Write(body[100:])
						return
					}
					w.Write(body)
				})
				c := baseConfig(be.addr)
				c.Routes[0].Cache = tc.route
				lb := start(t, cfg(c))
				r1, b1 := cacheReq(t, lb.addr, "GET", tc.first)
				if r1.StatusCode != status {
					t.Fatalf("first status %d, want %d", r1.StatusCode, status)
				}
				if got := r1.Header.Get("X-Cache-Status"); c.Routes[0].Cache.Off && got != "" || !c.Routes[0].Cache.Off && tc.first == "" && got != "MISS" {
					t.Errorf("first X-Cache-Status %q", got)
				}
				if r1.Header.Get("Content-Encoding") == "" && !bytes.Equal(b1, body) {
					t.Errorf("first body: %d bytes, want %d", len(b1), len(body))
				}
				method2 := tc.method2
				if method2 == "" {
					method2 = "GET"
				}
				r2, b2 := cacheReq(t, lb.addr, method2, tc.second)
				if r2.StatusCode != tc.want2 {
					t.Fatalf("second status %d, want %d", r2.StatusCode, tc.want2)
				}
				if got := r2.Header.Get("X-Cache-Status"); got != tc.status2 {
					t.Errorf("second X-Cache-Status %q, want %q", got, tc.status2)
				}
				if n := fetches.Load(); n != tc.fetches {
					t.Errorf("the target answered %d requests, want %d", n, tc.fetches)
				}
				if ce := r2.Header.Get("Content-Encoding"); tc.header["Content-Encoding"] == "" && ce != tc.encoding {
					t.Errorf("second Content-Encoding %q, want %q", ce, tc.encoding)
				}
				if tc.status2 == "HIT" {
					if r2.Header.Get("Age") == "" {
						t.Errorf("a hit without Age")
					}
					if r2.Header.Get("Cache-Control") != tc.header["Cache-Control"] {
						t.Errorf("hit's Cache-Control %q", r2.Header.Get("Cache-Control"))
					}
					if r2.Header.Get("X-Request-Id") == "" {
						t.Errorf("a hit without X-Request-Id")
					}
					hasVary := false
					for _, v := range r2.Header.Values("Vary") {
						hasVary = hasVary || hasToken(v, "accept-encoding")
					}
					if !hasVary {
						t.Errorf("hit's Vary %q does not name Accept-Encoding", r2.Header.Values("Vary"))
					}
				}
				switch {
				case r2.StatusCode == 304 || method2 == "HEAD":
					if len(b2) != 0 {
						t.Errorf("%d/%s answer with a %d-byte body", r2.StatusCode, method2, len(b2))
					}
					if method2 == "HEAD" && r2.Header.Get("Content-Length") != strconv.Itoa(len(body)) {
						t.Errorf("HEAD Content-Length %q, want %d", r2.Header.Get("Content-Length"), len(body))
					}
					if et := tc.header["ETag"]; r2.StatusCode == 304 && et != "" && r2.Header.Get("Etag") != et {
						t.Errorf("304 ETag %q, want %q", r2.Header.Get("Etag"), et)
					}
				case r2.StatusCode == 206:
					if !bytes.Equal(b2, body[:10]) {
						t.Errorf("range body %q", b2)
					}
				case tc.header["Content-Encoding"] == "":
					if dec := decode(t, tc.encoding, b2); !bytes.Equal(dec, body) {
						t.Errorf("second body decodes to %d bytes, want the %d sent", len(dec), len(body))
					}
					if tc.encoding == "gzip" && tc.header["ETag"] != "" && r2.Header.Get("Etag") != "W/"+tc.header["ETag"] {
						t.Errorf("compressed hit's ETag %q", r2.Header.Get("Etag"))
					}
				}
				// Every request of the table is in the fast subset.
				assertServedBy(t, lb, path, 2)
			})
		})
	}
}

// immutableBackend serves body under any path as an immutable asset and
// counts the fetches per path.
func immutableBackend(t *testing.T, body []byte, hold chan struct{}) (*backend, *sync.Map) {
	var counts sync.Map
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := counts.LoadOrStore(r.URL.Path, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		if hold != nil {
			select {
			case <-hold:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Cache-Control", immutable)
		w.Header().Set("Content-Type", "application/javascript")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
	return be, &counts
}

func fetchCount(m *sync.Map, path string) int64 {
	n, ok := m.Load(path)
	if !ok {
		return 0
	}
	return n.(*atomic.Int64).Load()
}

// TestCacheNewReleaseInvalidates: a hit until the pool's release
// generation moves on (the controller's activation), then a fetch.
func TestCacheNewReleaseInvalidates(t *testing.T) {
	onBothPaths(t, func(t *testing.T, path servingPath, cfg func(Config) Config) {
		body := textBody(8<<10, 3)
		be, counts := immutableBackend(t, body, nil)
		lb := start(t, cfg(cachingConfig(be.addr)))
		cl := client(t)
		for i, want := range []string{"MISS", "HIT"} {
			if resp, _ := get(t, cl, lb.url+"/a.js"); resp.Header.Get("X-Cache-Status") != want {
				t.Fatalf("request %d: X-Cache-Status %q, want %s", i, resp.Header.Get("X-Cache-Status"), want)
			}
		}
		p, _ := lb.Pool("app")
		p.NewRelease()
		for i, want := range []string{"MISS", "HIT"} {
			resp, got := get(t, cl, lb.url+"/a.js")
			if resp.Header.Get("X-Cache-Status") != want || got != string(body) {
				t.Fatalf("after NewRelease, request %d: X-Cache-Status %q (want %s), %d bytes", i, resp.Header.Get("X-Cache-Status"), want, len(got))
			}
		}
		if n := fetchCount(counts, "/a.js"); n != 2 {
			t.Errorf("%d fetches, want 2", n)
		}
		// A new configuration starts with empty caches.
		if err := lb.Reload(cfg(cachingConfig(be.addr))); err != nil {
			t.Fatal(err)
		}
		if resp, _ := get(t, cl, lb.url+"/a.js"); resp.Header.Get("X-Cache-Status") != "MISS" {
			t.Errorf("after Reload: X-Cache-Status %q, want MISS", resp.Header.Get("X-Cache-Status"))
		}
	})
}

// TestCacheByteBound: a cache of MaxBytes keeps the most recently used
// entries that fit; the oldest is evicted and fetched again.
func TestCacheByteBound(t *testing.T) {
	onBothPaths(t, func(t *testing.T, path servingPath, cfg func(Config) Config) {
		body := textBody(10<<10, 4)
		be, counts := immutableBackend(t, body, nil)
		c := baseConfig(be.addr)
		c.Routes[0].Cache = Cache{MaxBytes: 25 << 10} // two entries fit, not three
		lb := start(t, cfg(c))
		cl := client(t)
		for _, p := range []string{"/1.js", "/2.js", "/1.js", "/3.js", "/1.js", "/3.js", "/2.js"} {
			if resp, got := get(t, cl, lb.url+p); got != string(body) {
				t.Fatalf("%s: %d bytes (%s)", p, len(got), resp.Status)
			}
		}
		// /1.js stays (used before /3.js came), /2.js was evicted by /3.js.
		for p, want := range map[string]int64{"/1.js": 1, "/2.js": 2, "/3.js": 1} {
			if n := fetchCount(counts, p); n != want {
				t.Errorf("%s fetched %d times, want %d", p, n, want)
			}
		}
		st := lb.tbl.Load().routers["web"].any[0].cache.Stats()
		if st.Bytes > 25<<10 || st.Evicted < 1 {
			t.Errorf("stats %+v: over the bound or nothing evicted", st)
		}
	})
}

// TestCacheStampede: many requests for a key seen cacheable but not
// cached now (its entry belongs to the release before) reach the target
// once; the others wait for that fetch and are served from it.
func TestCacheStampede(t *testing.T) {
	onBothPaths(t, func(t *testing.T, path servingPath, cfg func(Config) Config) {
		body := textBody(64<<10, 5)
		hold := make(chan struct{})
		be, counts := immutableBackend(t, body, hold)
		lb := start(t, cfg(cachingConfig(be.addr)))
		ac := lb.tbl.Load().routers["web"].any[0].cache
		cl := client(t)
		// The first answer is stored: the key is seen cacheable.
		primed := make(chan string, 1)
		go func() {
			resp, err := cl.Get(lb.url + "/bundle.js")
			if err != nil {
				primed <- err.Error()
				return
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			primed <- fmt.Sprintf("%d bytes", len(got))
		}()
		hold <- struct{}{}
		if got := <-primed; got != fmt.Sprintf("%d bytes", len(body)) {
			t.Fatalf("first request: %s", got)
		}
		if !ac.seenCacheable(string(appendCacheKey(nil, lb.addr, "/bundle.js"))) {
			t.Fatalf("the stored key is not seen cacheable")
		}
		p, _ := lb.Pool("app")
		p.NewRelease()
		before := ac.Stats()
		const n = 16
		var wg sync.WaitGroup
		errs := make(chan string, n)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := cl.Get(lb.url + "/bundle.js")
				if err != nil {
					errs <- err.Error()
					return
				}
				defer resp.Body.Close()
				got, _ := io.ReadAll(resp.Body)
				if !bytes.Equal(got, body) {
					errs <- fmt.Sprintf("%d bytes, status %d", len(got), resp.StatusCode)
				}
			}()
		}
		// Every request looked the key up (one leads, the others wait)
		// before the target answers.
		waitFor(t, 10*time.Second, "all requests waiting", func() bool { return ac.Stats().Misses-before.Misses == n })
		close(hold)
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
		if c := fetchCount(counts, "/bundle.js"); c != 2 {
			t.Errorf("the target was asked %d times, want 2 (once per release)", c)
		}
		if st := ac.Stats(); st.Stored-before.Stored != 1 || st.Hits-before.Hits != n-1 {
			t.Errorf("stats %+v (before %+v), want 1 more stored and %d more hits", st, before, n-1)
		}
	})
}

// TestCacheNeverHoldsUncacheable: concurrent identical requests for a URL
// never seen cacheable (a dynamic page, a long poll) all reach the target
// at once: none waits for another's answer. The target answers only when
// all n are in, so a request held by the cache would make this time out.
// Then, after an answer the rule refuses, a key seen cacheable before is
// forgotten and not held either.
func TestCacheNeverHoldsUncacheable(t *testing.T) {
	onBothPaths(t, func(t *testing.T, path servingPath, cfg func(Config) Config) {
		const n = 8
		var arrived atomic.Int64
		all := make(chan struct{})
		var cacheable atomic.Bool
		be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
			if cacheable.Load() {
				w.Header().Set("Cache-Control", immutable)
			} else {
				w.Header().Set("Cache-Control", "no-store")
			}
			if r.URL.Query().Get("wait") != "" {
				if arrived.Add(1) == n {
					close(all)
				}
				select {
				case <-all:
				case <-r.Context().Done():
					return
				}
			}
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "page")
		})
		lb := start(t, cfg(cachingConfig(be.addr)))
		ac := lb.tbl.Load().routers["web"].any[0].cache
		cl := client(t)
		burst := func(url string) {
			t.Helper()
			var wg sync.WaitGroup
			errs := make(chan string, n)
			for range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp, err := cl.Get(url)
					if err != nil {
						errs <- err.Error()
						return
					}
					defer resp.Body.Close()
					if got, _ := io.ReadAll(resp.Body); string(got) != "page" || resp.Header.Get("X-Cache-Status") != "MISS" {
						errs <- fmt.Sprintf("%q, X-Cache-Status %q", got, resp.Header.Get("X-Cache-Status"))
					}
				}()
			}
			wg.Wait()
			close(errs)
			for e := range errs {
				t.Error(e)
			}
		}
		burst(lb.url + "/live?wait=1")
		if arrived.Load() != n {
			t.Fatalf("%d requests reached the target, want %d", arrived.Load(), n)
		}
		// A key once stored, then answered no-store: forgotten.
		cacheable.Store(true)
		get(t, cl, lb.url+"/live?wait=")
		if !ac.seenCacheable(string(appendCacheKey(nil, lb.addr, "/live?wait="))) {
			t.Fatalf("a stored key is not seen cacheable")
		}
		p, _ := lb.Pool("app")
		p.NewRelease()
		cacheable.Store(false)
		if resp, _ := get(t, cl, lb.url+"/live?wait="); resp.Header.Get("X-Cache-Status") != "MISS" {
			t.Fatalf("after NewRelease: X-Cache-Status %q, want MISS", resp.Header.Get("X-Cache-Status"))
		}
		if ac.seenCacheable(string(appendCacheKey(nil, lb.addr, "/live?wait="))) {
			t.Errorf("a key answered no-store is still seen cacheable")
		}
		if st := ac.Stats(); st.Stored != 1 || st.Entries != 0 {
			t.Errorf("stats %+v, want 1 stored, none kept", st)
		}
	})
}

// TestCacheExpires: an entry is served until its freshness (max-age less
// the target's Age) runs out, then fetched again.
func TestCacheExpires(t *testing.T) {
	onBothPaths(t, func(t *testing.T, path servingPath, cfg func(Config) Config) {
		var fetches atomic.Int64
		be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
			fetches.Add(1)
			w.Header().Set("Cache-Control", "public, max-age=3601, immutable")
			w.Header().Set("Age", "3600") // one second of freshness left
			w.Header().Set("Content-Type", "application/javascript")
			io.WriteString(w, "x")
		})
		lb := start(t, cfg(cachingConfig(be.addr)))
		cl := client(t)
		get(t, cl, lb.url+"/e.js")
		resp, _ := get(t, cl, lb.url+"/e.js")
		if resp.Header.Get("X-Cache-Status") != "HIT" || resp.Header.Get("Age") < "3600" {
			t.Fatalf("X-Cache-Status %q, Age %q: want a hit aged 3600+", resp.Header.Get("X-Cache-Status"), resp.Header.Get("Age"))
		}
		waitFor(t, 5*time.Second, "the entry to expire", func() bool {
			resp, _ := get(t, cl, lb.url+"/e.js")
			return resp.Header.Get("X-Cache-Status") == "MISS"
		})
		if fetches.Load() != 2 {
			t.Errorf("%d fetches, want 2", fetches.Load())
		}
	})
}

// TestCacheMetrics: /metrics counts hits and misses per route, and the
// body bytes before compression and as sent.
func TestCacheMetrics(t *testing.T) {
	onBothPaths(t, func(t *testing.T, path servingPath, cfg func(Config) Config) {
		body := textBody(32<<10, 6)
		be, _ := immutableBackend(t, body, nil)
		lb := start(t, cfg(cachingConfig(be.addr)))
		cacheReq(t, lb.addr, "GET", "")
		_, gz := cacheReq(t, lb.addr, "GET", "Accept-Encoding: gzip\r\n")
		for name, want := range map[string]string{
			`shoal_lb_cache_lookups_total{result="hit",route="all"}`:  "1",
			`shoal_lb_cache_lookups_total{result="miss",route="all"}`: "1",
			`shoal_lb_body_bytes_total{route="all",stage="body"}`:     strconv.Itoa(2 * len(body)),
			`shoal_lb_body_bytes_total{route="all",stage="sent"}`:     strconv.Itoa(len(body) + len(gz)),
		} {
			waitFor(t, 5*time.Second, name, func() bool { return metricValue(t, lb.Balancer, name) == want })
		}
	})
}

// TestCacheRequestRecord: the observer's record says what the cache did
// (stored, hit, miss) and the body before compression and as sent, for
// the dashboard's page-load report.
func TestCacheRequestRecord(t *testing.T) {
	onBothPaths(t, func(t *testing.T, path servingPath, cfg func(Config) Config) {
		body := textBody(32<<10, 7)
		be, _ := immutableBackend(t, body, nil)
		obs := &recObserver{}
		c := cachingConfig(be.addr)
		c.Observer = obs
		lb := start(t, cfg(c))
		cacheReq(t, lb.addr, "GET", "")
		_, gz := cacheReq(t, lb.addr, "GET", "Accept-Encoding: gzip\r\n")
		raw(t, lb.addr, "POST /app.3f2a.js HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		waitFor(t, 5*time.Second, "three records", func() bool { return len(obs.all()) == 3 })
		recs := obs.all()
		want := []struct {
			cache      string
			body, sent int64
		}{
			{"stored", int64(len(body)), int64(len(body))},
			{"hit", int64(len(body)), int64(len(gz))},
			{"", int64(len(body)), int64(len(body))},
		}
		for i, w := range want {
			if r := recs[i]; r.Cache != w.cache || r.BodyBytes != w.body || r.BytesOut != w.sent {
				t.Errorf("record %d: cache %q body %d sent %d, want %q %d %d", i, r.Cache, r.BodyBytes, r.BytesOut, w.cache, w.body, w.sent)
			}
		}
	})
}

// TestCacheHitToSlowReader: a hit larger than the socket buffers, to a
// client with a small receive buffer, is written in full: the fast path
// goes on with the entry's body when the client can take more.
func TestCacheHitToSlowReader(t *testing.T) {
	onBothPaths(t, func(t *testing.T, path servingPath, cfg func(Config) Config) {
		body := textBody(12<<20, 8)
		be, counts := immutableBackend(t, body, nil)
		c := cachingConfig(be.addr)
		c.Routes[0].Cache = Cache{MaxBytes: 32 << 20, MaxEntryBytes: 16 << 20}
		lb := start(t, cfg(c))
		for i, want := range []string{"MISS", "HIT"} {
			d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
				var serr error
				rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
				return serr
			}}
			conn, err := d.Dial("tcp", lb.addr)
			if err != nil {
				t.Fatal(err)
			}
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			io.WriteString(conn, "GET /big.js HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 4096), nil)
			if err != nil {
				conn.Close()
				t.Fatalf("request %d: %v", i, err)
			}
			got, err := io.ReadAll(resp.Body)
			conn.Close()
			if err != nil || !bytes.Equal(got, body) || resp.Header.Get("X-Cache-Status") != want {
				t.Fatalf("request %d: %d of %d bytes (%v), X-Cache-Status %q, want %s", i, len(got), len(body), err, resp.Header.Get("X-Cache-Status"), want)
			}
		}
		if n := fetchCount(counts, "/big.js"); n != 1 {
			t.Errorf("%d fetches, want 1", n)
		}
	})
}
