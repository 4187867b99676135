package lb

import (
	"container/list"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The asset cache (issue 18): answers that the target marks as shared and
// long-lived (Meteor's content-hashed bundles: "public, max-age=31536000,
// immutable") are kept in memory per route and served without reaching
// the target. One function, cacheFor, decides what is stored, for both
// paths; assetCache is the store (byte-bounded LRU, one fetch per key at
// a time, entries dropped at their freshness or when the pool's release
// generation moves on); the paths serve entries with the head built by
// cachedHead. The net/http path's side is in proxy.go's writeResponse and
// cachehttp.go, the fast path's in evcache.go.

// Cache is a route's asset cache setting. The zero value is on: only
// answers marked immutable or fresh for CacheMinFresh are stored, and a
// request waits for another's fetch of the same key only when the key's
// answer was stored before (a "seen cacheable" key: its entry expired,
// was evicted or belongs to an older release), so concurrent requests
// for a dynamic page, a long poll or anything never stored go to the
// target at once, as without a cache.
type Cache struct {
	// Off turns the route's cache off: nothing is looked up or stored
	// and answers carry no X-Cache-Status.
	Off bool
	// MaxBytes bounds the bytes the route's cache holds: bodies (each
	// encoding kept counts) and stored fields. Zero means
	// DefaultCacheMaxBytes.
	MaxBytes int64
	// MaxEntryBytes bounds one answer's body (by its Content-Length);
	// larger answers pass uncached. Zero means DefaultCacheMaxEntryBytes.
	MaxEntryBytes int64
}

// Defaults of Cache, and the rule's fixed values.
const (
	DefaultCacheMaxBytes      = 64 << 20
	DefaultCacheMaxEntryBytes = 8 << 20
	// CacheMinFresh is the freshness lifetime an answer needs to be
	// stored when it is not marked immutable: the cache is for assets,
	// not for pages that change within minutes.
	CacheMinFresh = time.Hour
	// cacheLockWait bounds how long a request waits for another's fetch
	// of the same key (nginx's proxy_cache_lock_timeout default); then it
	// goes to the target itself.
	cacheLockWait = 5 * time.Second
	// cacheStatusField is the header the answers of a caching route
	// carry: HIT (served from the cache) or MISS (looked up, not found:
	// the target answered). nginx users know it as $upstream_cache_status.
	cacheStatusField = "X-Cache-Status"
	// cacheMaxSeen bounds the keys a cache remembers as seen cacheable
	// (the only ones whose fetch others wait for); when full the set is
	// emptied and filled again by the answers stored from then on.
	cacheMaxSeen = 1 << 14
)

// checkCache reports what is wrong with c, one error per problem.
func checkCache(c Cache) []error {
	var errs []error
	if c.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("max_size: must not be negative, got %d", c.MaxBytes))
	}
	if c.MaxEntryBytes < 0 {
		errs = append(errs, fmt.Errorf("max_entry_size: must not be negative, got %d", c.MaxEntryBytes))
	}
	if c.MaxBytes > 0 && c.MaxEntryBytes > c.MaxBytes {
		errs = append(errs, fmt.Errorf("max_entry_size: %d is more than max_size %d", c.MaxEntryBytes, c.MaxBytes))
	}
	return errs
}

// cacheControl is what the cache reads of Cache-Control (RFC 9111 5.2.2).
type cacheControl struct {
	maxAge, sMaxAge              int64 // seconds; -1 absent
	noStore, noCache, private    bool
	public, immutable, malformed bool
}

// readCacheControl adds one Cache-Control field value to cc. A directive
// with a field list ("private=Set-Cookie", "no-cache=X") counts as the
// whole directive: the cache never stores a part of an answer. A bad
// delta-seconds value marks the answer malformed (not stored).
func (cc *cacheControl) read(v string) {
	for v != "" {
		var el string
		el, v, _ = strings.Cut(v, ",")
		name, arg, _ := strings.Cut(el, "=")
		name = strings.TrimSpace(name)
		arg = strings.Trim(strings.TrimSpace(arg), `"`)
		switch {
		case strings.EqualFold(name, "max-age"):
			cc.maxAge = cc.seconds(arg, cc.maxAge)
		case strings.EqualFold(name, "s-maxage"):
			cc.sMaxAge = cc.seconds(arg, cc.sMaxAge)
		case strings.EqualFold(name, "no-store"):
			cc.noStore = true
		case strings.EqualFold(name, "no-cache"):
			cc.noCache = true
		case strings.EqualFold(name, "private"):
			cc.private = true
		case strings.EqualFold(name, "public"):
			cc.public = true
		case strings.EqualFold(name, "immutable"):
			cc.immutable = true
		}
	}
}

// seconds reads a delta-seconds value; a second value of the same
// directive makes the answer malformed (RFC 9111 4.2.1: invalid).
func (cc *cacheControl) seconds(arg string, prev int64) int64 {
	n, err := strconv.ParseInt(arg, 10, 64)
	if err != nil || n < 0 || prev >= 0 {
		cc.malformed = true
		return 0
	}
	return n
}

// cacheFacts are what cacheFor reads of one exchange, from a parsed head
// (fast path) or from net/http's types.
type cacheFacts struct {
	get    bool // a GET (only a GET's answer is stored; a HEAD is served from one)
	auth   bool // the request carried Authorization
	ranged bool // the request asked for a Range, or the answer has Content-Range
	status int
	cc     cacheControl
	// setCookie: the target's answer sets a cookie.
	setCookie bool
	// varyOther: Vary names something besides Accept-Encoding ("*" too).
	varyOther bool
	// encoded: the target sent the body encoded (Content-Encoding).
	encoded bool
	// trailers: the answer announces trailers.
	trailers bool
	// length is Content-Length, -1 when the target did not say.
	length int64
	// age is the target's Age in seconds (0 when absent or bad).
	age int64
}

// newCacheFacts returns facts with nothing read yet.
func newCacheFacts() cacheFacts {
	return cacheFacts{length: -1, cc: cacheControl{maxAge: -1, sMaxAge: -1}}
}

// cacheFor decides, for both paths, whether an answer is stored and for
// how long: its remaining freshness (RFC 9111 4.2: s-maxage, else
// max-age, less the target's Age), and whether it may be served to a
// request with Authorization (public). Stored only when all hold:
//
//   - a GET without Range, answered 200 with a Content-Length of at most
//     maxEntry bytes, not encoded by the target, without trailers;
//   - Cache-Control without no-store, no-cache or private, and with a
//     freshness lifetime of CacheMinFresh or more, or immutable with any
//     positive lifetime (Expires alone is not read);
//   - no Set-Cookie, no Vary other than Accept-Encoding;
//   - a request with Authorization only when the answer says public or
//     s-maxage (RFC 9111 3.5).
func cacheFor(f *cacheFacts, maxEntry int64) (fresh time.Duration, ok bool) {
	cc := &f.cc
	switch {
	case !f.get, f.ranged, f.status != http.StatusOK, f.length < 0, f.length > maxEntry,
		f.encoded, f.trailers, f.setCookie, f.varyOther,
		cc.malformed, cc.noStore, cc.noCache, cc.private,
		f.auth && !cc.public && cc.sMaxAge < 0:
		return 0, false
	}
	life := cc.maxAge
	if cc.sMaxAge >= 0 {
		life = cc.sMaxAge
	}
	if life <= 0 || !cc.immutable && time.Duration(life)*time.Second < CacheMinFresh {
		return 0, false
	}
	life -= f.age
	if life <= 0 {
		return 0, false
	}
	return time.Duration(life) * time.Second, true
}

// readField adds one answer field (name as sent, value trimmed) to f.
func (f *cacheFacts) readField(name, v string) {
	switch {
	case strings.EqualFold(name, "cache-control"):
		f.cc.read(v)
	case strings.EqualFold(name, "set-cookie"):
		f.setCookie = true
	case strings.EqualFold(name, "vary"):
		for v != "" {
			var el string
			el, v, _ = strings.Cut(v, ",")
			if el = strings.TrimSpace(el); el != "" && !strings.EqualFold(el, "accept-encoding") {
				f.varyOther = true
			}
		}
	case strings.EqualFold(name, "content-encoding"):
		f.encoded = true
	case strings.EqualFold(name, "content-range"):
		f.ranged = true
	case strings.EqualFold(name, "trailer"):
		f.trailers = true
	case strings.EqualFold(name, "age"):
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
			f.age = n
		}
	}
}

// cachedField is one answer field an entry serves again.
type cachedField struct {
	name  string // as the target sent it
	canon string // net/http's canonical form
	value string
}

// keptField reports whether a target's answer field is stored with the
// entry: not the framing (Content-Length, written per encoding), not the
// hop-by-hop fields, not Age (recomputed), ETag (kept apart, made weak
// for a compressed form) or the request's id.
func keptField(name string) bool {
	for _, k := range [...]string{"content-length", "age", "etag", "x-request-id", "x-cache-status", "transfer-encoding"} {
		if strings.EqualFold(name, k) {
			return false
		}
	}
	for _, k := range hopHeaders {
		if strings.EqualFold(name, k) {
			return false
		}
	}
	return true
}

// cacheEntry is one stored answer. Its fields and bodies never change
// once visible (a compressed form is added whole, under the cache's
// lock), so the paths write them without copying.
type cacheEntry struct {
	key     string
	gen     uint64
	fields  []cachedField
	ctype   string // Content-Type, for the compression rule
	etag    string // the target's ETag, "" for none
	lastMod time.Time
	varies  bool // the target's Vary covers Accept-Encoding already
	noTrans bool // Cache-Control: no-transform
	public  bool // may be served to a request with Authorization
	stored  time.Time
	age0    int64 // the target's Age when stored
	expires time.Time
	// body holds the identity body and each compressed form made so far;
	// read and written under assetCache.mu.
	body [numEncodings][]byte
	size int64 // bytes counted against the cache's bound
	elem *list.Element
}

// cacheFill is one fetch of a key in progress: the other requests for the
// key wait for it (nginx's proxy_cache_lock), then look again.
//
// A fetch of a key not seen cacheable is shared (registered in
// assetCache.fills) with no one: it stores the answer if cacheFor allows
// but no request waits for it.
type cacheFill struct {
	key   string
	gen   uint64
	ended bool
	// refused is set when cacheFor refused the answer: the key is no
	// longer seen cacheable.
	refused bool
	waiters []func()
}

// CacheStats count a route's cache activity.
type CacheStats struct {
	Hits, Misses, Stored, Evicted int64
	Bytes, Entries                int64
}

// assetCache is one route's store.
type assetCache struct {
	maxBytes, maxEntry int64

	mu      sync.Mutex
	entries map[string]*cacheEntry
	fills   map[string]*cacheFill
	// seen holds the keys whose answer was stored (at most
	// cacheMaxSeen): only their fetches are waited for.
	seen  map[string]struct{}
	lru   list.List // front: most recently used
	bytes int64

	hits, misses, stored, evicted atomic.Int64
}

// newAssetCache returns the route's cache, nil when c is off.
func newAssetCache(c Cache) *assetCache {
	if c.Off {
		return nil
	}
	// The maps are made at the first store (endFill): a route that never
	// stores costs its bounds alone (issue 15: memory per route).
	ac := &assetCache{maxBytes: c.MaxBytes, maxEntry: c.MaxEntryBytes}
	if ac.maxBytes == 0 {
		ac.maxBytes = DefaultCacheMaxBytes
	}
	if ac.maxEntry == 0 {
		ac.maxEntry = min(DefaultCacheMaxEntryBytes, ac.maxBytes)
	}
	return ac
}

// Stats returns the cache's counters.
func (ac *assetCache) Stats() CacheStats {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	return CacheStats{Hits: ac.hits.Load(), Misses: ac.misses.Load(), Stored: ac.stored.Load(),
		Evicted: ac.evicted.Load(), Bytes: ac.bytes, Entries: int64(len(ac.entries))}
}

// lookup finds key under the pool's release generation gen at now. It
// returns the entry on a hit. On a miss it returns a fetch of key: lead
// is true when the caller is to make it (and must end it with endFill),
// false when another request makes it (the caller may wait on it). Only
// a key seen cacheable gets a fetch that others wait on; for any other
// key each request leads a fetch of its own, so nothing is held. With
// mayWait false (a request that waited once already) it returns no fill
// rather than one to wait on. key may view a buffer: it is copied when
// kept.
//
// A request with Authorization (auth) is served only an entry stored as
// public; a private one makes it pass the cache (no entry, no fill).
func (ac *assetCache) lookup(key string, gen uint64, now time.Time, mayWait, auth bool) (e *cacheEntry, fill *cacheFill, lead bool) {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	if e = ac.entries[key]; e != nil {
		if e.gen == gen && now.Before(e.expires) {
			if auth && !e.public {
				return nil, nil, false
			}
			ac.lru.MoveToFront(e.elem)
			ac.hits.Add(1)
			return e, nil, false
		}
		ac.removeLocked(e)
		e = nil
	}
	ac.misses.Add(1)
	if f := ac.fills[key]; f != nil && f.gen == gen {
		if !mayWait {
			return nil, nil, false
		}
		return nil, f, false
	}
	f := &cacheFill{key: strings.Clone(key), gen: gen}
	if _, ok := ac.seen[key]; ok {
		ac.fills[f.key] = f
	}
	return nil, f, true
}

// seenCacheable reports whether key is remembered as seen cacheable.
func (ac *assetCache) seenCacheable(key string) bool {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	_, ok := ac.seen[key]
	return ok
}

// wait calls fn once f has ended (at once, on the caller's goroutine,
// when it has). fn runs without the cache's lock, maybe on another
// request's goroutine: it must only hand the news on.
func (ac *assetCache) wait(f *cacheFill, fn func()) {
	ac.mu.Lock()
	if !f.ended {
		f.waiters = append(f.waiters, fn)
		ac.mu.Unlock()
		return
	}
	ac.mu.Unlock()
	fn()
}

// endFill ends the fetch f: e (nil when the answer was not stored) is
// stored when its generation is still the pool's (cur), its key is
// remembered as seen cacheable (forgotten when f.refused), and the
// waiting requests are told.
func (ac *assetCache) endFill(f *cacheFill, e *cacheEntry, cur uint64) {
	ac.mu.Lock()
	if f.ended {
		ac.mu.Unlock()
		return
	}
	f.ended = true
	if ac.fills[f.key] == f {
		delete(ac.fills, f.key)
	}
	if f.refused {
		delete(ac.seen, f.key)
	}
	if e != nil {
		if ac.seen == nil {
			// fills is written only for keys in seen, entries only below.
			ac.entries, ac.fills, ac.seen = map[string]*cacheEntry{}, map[string]*cacheFill{}, map[string]struct{}{}
		}
		if _, ok := ac.seen[e.key]; !ok {
			if len(ac.seen) >= cacheMaxSeen {
				clear(ac.seen)
			}
			ac.seen[e.key] = struct{}{}
		}
	}
	if e != nil && e.gen == cur {
		if old := ac.entries[e.key]; old != nil {
			ac.removeLocked(old)
		}
		e.size = e.measure()
		ac.entries[e.key] = e
		e.elem = ac.lru.PushFront(e)
		ac.bytes += e.size
		ac.stored.Add(1)
		ac.evictLocked(e)
	}
	ws := f.waiters
	f.waiters = nil
	ac.mu.Unlock()
	for _, fn := range ws {
		fn()
	}
}

// measure is the bytes e counts against the bound.
func (e *cacheEntry) measure() int64 {
	n := int64(len(e.key) + len(e.etag) + len(e.ctype) + 128)
	for _, f := range e.fields {
		n += int64(len(f.name) + len(f.canon) + len(f.value))
	}
	for _, b := range e.body {
		n += int64(len(b))
	}
	return n
}

// evictLocked drops the least recently used entries until the cache is
// within its bound, keeping keep unless it alone is too large.
func (ac *assetCache) evictLocked(keep *cacheEntry) {
	for ac.bytes > ac.maxBytes {
		el := ac.lru.Back()
		if el == nil {
			return
		}
		e := el.Value.(*cacheEntry)
		if e == keep && ac.lru.Len() > 1 {
			el = el.Prev()
			e = el.Value.(*cacheEntry)
		}
		ac.removeLocked(e)
		ac.evicted.Add(1)
	}
}

func (ac *assetCache) removeLocked(e *cacheEntry) {
	if ac.entries[e.key] == e {
		delete(ac.entries, e.key)
		ac.lru.Remove(e.elem)
		ac.bytes -= e.size
	}
}

// form returns e's body in coding enc, compressing the identity body at
// level once and keeping the result (counted against the bound) when
// enc was not made yet. Compressing runs without the lock; two requests
// that race make it twice and keep one.
func (ac *assetCache) form(e *cacheEntry, enc Encoding, level int) []byte {
	ac.mu.Lock()
	b := e.body[enc]
	id := e.body[EncIdentity]
	ac.mu.Unlock()
	switch {
	case enc == EncIdentity:
		return id
	case b != nil:
		return b
	}
	sink := &appendSink{b: make([]byte, 0, len(id)/3+64)}
	z := getEncoder(enc, level, sink)
	_, err := z.Write(id)
	if err == nil {
		err = z.Close()
	}
	putEncoder(enc, level, z)
	if err != nil {
		// The sink cannot fail; an encoder error is a bug.
		panic("cache: compress: " + err.Error())
	}
	b = sink.b
	ac.mu.Lock()
	defer ac.mu.Unlock()
	if have := e.body[enc]; have != nil {
		return have
	}
	e.body[enc] = b
	if ac.entries[e.key] == e {
		n := e.measure()
		ac.bytes += n - e.size
		e.size = n
		ac.evictLocked(e)
	}
	return b
}

// cacheKey is the key of a request on a route: host (lower-cased, as
// routing reads it) and the request target, path and query as sent. The
// route fixes the pool.
func appendCacheKey(dst []byte, host, target string) []byte {
	for i := 0; i < len(host); i++ {
		c := host[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	dst = append(dst, ' ')
	return append(dst, target...)
}

// cacheRequest is what the cache reads of a request, from either path.
type cacheRequest struct {
	method string
	// ranged: a Range (or If-Range) field; such requests pass the cache.
	ranged bool
	auth   bool
	// ifNoneMatch and ifModifiedSince are the conditional fields' values
	// ("" absent); several If-None-Match fields are joined with ", ".
	ifNoneMatch, ifModifiedSince string
	accept                       Encoding
}

// usesCache reports whether a request is looked up at all: a GET or HEAD
// without Range.
func (q *cacheRequest) usesCache() bool {
	return (q.method == http.MethodGet || q.method == http.MethodHead) && !q.ranged
}

// readField adds one request field to q.
func (q *cacheRequest) readField(name, v string) {
	switch {
	case strings.EqualFold(name, "range"), strings.EqualFold(name, "if-range"):
		q.ranged = true
	case strings.EqualFold(name, "authorization"):
		q.auth = true
	case strings.EqualFold(name, "if-none-match"):
		if q.ifNoneMatch != "" {
			q.ifNoneMatch += ", " + v
		} else {
			q.ifNoneMatch = v
		}
	case strings.EqualFold(name, "if-modified-since"):
		q.ifModifiedSince = v
	}
}

// cachedAnswer is how an entry is served to one request: the status
// (200 or 304), the body's coding and bytes (nil for a HEAD or a 304, as
// for any bodyless answer), the length announced, the ETag sent, and
// whether Vary: Accept-Encoding is added.
type cachedAnswer struct {
	status int
	enc    Encoding
	body   []byte
	length int
	etag   string
	vary   bool
	age    int64
}

// answer decides how e is served to q at now on a route with compression
// rule rule: the coding from compressFor (the same rule as for an answer
// from the target), 304 when a conditional field matches (If-None-Match
// by weak comparison, else If-Modified-Since against Last-Modified; RFC
// 9110 13.1.2, 13.1.3).
func (ac *assetCache) answer(e *cacheEntry, q *cacheRequest, rule *compressRule, now time.Time) cachedAnswer {
	id := len(e.body[EncIdentity])
	f := answerFacts{head: q.method == http.MethodHead, status: http.StatusOK, contentType: e.ctype,
		noTransform: e.noTrans, varies: e.varies, length: int64(id)}
	enc, vary := rule.compressFor(q.accept, &f)
	a := cachedAnswer{status: http.StatusOK, enc: enc, vary: vary, etag: e.etag, length: id}
	a.age = e.age0 + int64(now.Sub(e.stored)/time.Second)
	if enc != EncIdentity && e.etag != "" {
		if prefix, keep := weakETag(e.etag); keep {
			a.etag = prefix + e.etag
		} else {
			a.etag = ""
		}
	}
	switch {
	case q.ifNoneMatch != "":
		if etagMatches(q.ifNoneMatch, a.etag) {
			a.status = http.StatusNotModified
		}
	case q.ifModifiedSince != "" && !e.lastMod.IsZero():
		if t, err := http.ParseTime(q.ifModifiedSince); err == nil && !e.lastMod.After(t) {
			a.status = http.StatusNotModified
		}
	}
	if a.status == http.StatusNotModified {
		a.enc, a.length = EncIdentity, 0
		return a
	}
	if enc != EncIdentity {
		a.body = ac.form(e, enc, rule.level)
		a.length = len(a.body)
	} else {
		a.body = e.body[EncIdentity]
	}
	if f.head {
		a.body = nil
	}
	return a
}

// etagMatches is If-None-Match's weak comparison of list against etag
// ("*" matches any stored answer).
func etagMatches(list, etag string) bool {
	if etag == "" {
		return false
	}
	opaque := strings.TrimPrefix(etag, "W/")
	for list != "" {
		var el string
		el, list, _ = strings.Cut(list, ",")
		el = strings.TrimSpace(el)
		if el == "*" || strings.TrimPrefix(el, "W/") == opaque {
			return true
		}
	}
	return false
}

// notModifiedField reports whether a stored field goes into a 304 (RFC
// 9110 15.4.5: the fields a 200 would carry that describe caching).
func notModifiedField(name string) bool {
	for _, k := range [...]string{"cache-control", "date", "expires", "vary", "content-location"} {
		if strings.EqualFold(name, k) {
			return true
		}
	}
	return false
}

// cachedFields calls field for each field of the client's head for
// answer a of e, in order: the stored fields (a 304 only those of
// notModifiedField), ETag, Age, the cache status, Vary, the coding and
// the length. Both paths build the head from it; the status line, the
// request id and Connection are theirs.
func cachedFields(e *cacheEntry, a *cachedAnswer, field func(canon, name, value string)) {
	nm := a.status == http.StatusNotModified
	for _, f := range e.fields {
		if !nm || notModifiedField(f.name) {
			field(f.canon, f.name, f.value)
		}
	}
	if a.etag != "" {
		field("Etag", "ETag", a.etag)
	}
	var n [20]byte
	field("Age", "Age", string(strconv.AppendInt(n[:0], a.age, 10)))
	field(cacheStatusField, cacheStatusField, "HIT")
	if a.vary {
		field("Vary", "Vary", "Accept-Encoding")
	}
	if nm {
		return
	}
	if a.enc != EncIdentity {
		field("Content-Encoding", "Content-Encoding", a.enc.String())
	}
	field("Content-Length", "Content-Length", strconv.Itoa(a.length))
}

// newEntry starts an entry for an answer stored under key and gen.
func newEntry(key string, gen uint64, now time.Time, fresh time.Duration, f *cacheFacts) *cacheEntry {
	return &cacheEntry{key: key, gen: gen, stored: now, age0: f.age, expires: now.Add(fresh),
		public: f.cc.public || f.cc.sMaxAge >= 0}
}

// addField stores one of the target's answer fields in e (those keptField
// allows; ETag, Last-Modified, Content-Type and Vary are read too).
func (e *cacheEntry) addField(name, value string) {
	switch {
	case strings.EqualFold(name, "etag"):
		if e.etag == "" {
			e.etag = value
		}
	case strings.EqualFold(name, "content-type"):
		if e.ctype == "" {
			e.ctype = value
		}
	case strings.EqualFold(name, "last-modified"):
		if t, err := http.ParseTime(value); err == nil {
			e.lastMod = t
		}
	case strings.EqualFold(name, "vary"):
		e.varies = e.varies || varyCovers(value)
	case strings.EqualFold(name, "cache-control"):
		e.noTrans = e.noTrans || hasToken(value, "no-transform")
	}
	if keptField(name) {
		e.fields = append(e.fields, cachedField{name: name, canon: http.CanonicalHeaderKey(name), value: value})
	}
}
