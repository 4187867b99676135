package dashboard

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

const (
	cookieName = "shoal_session"
	// sessionTTL is a session's absolute lifetime.
	sessionTTL = 12 * time.Hour
	// maxSessions bounds the session table; the oldest is dropped past it.
	maxSessions = 1000
	csrfField   = "csrf"
	csrfHeader  = "X-CSRF-Token"
)

type session struct {
	csrf    string
	expires time.Time
	flash   string // a one-time message for the next page
}

// sessions is the in-memory session table. A restart logs everyone out.
type sessions struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]session
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never returns an error (crypto/rand contract since Go 1.24)
	return hex.EncodeToString(b)
}

// create stores a new session and returns its id.
func (s *sessions) create() (string, session) {
	now := s.now()
	id := randomHex(32)
	sess := session{csrf: randomHex(32), expires: now.Add(sessionTTL)}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.m {
		if !now.Before(v.expires) {
			delete(s.m, k)
		}
	}
	if len(s.m) >= maxSessions {
		var oldest string
		var at time.Time
		for k, v := range s.m {
			if oldest == "" || v.expires.Before(at) {
				oldest, at = k, v.expires
			}
		}
		delete(s.m, oldest)
	}
	s.m[id] = sess
	return id, sess
}

// get returns the live session of r, if any.
func (s *sessions) get(r *http.Request) (string, session, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return "", session{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.m[c.Value]
	if !ok {
		return "", session{}, false
	}
	if !s.now().Before(sess.expires) {
		delete(s.m, c.Value)
		return "", session{}, false
	}
	return c.Value, sess, true
}

// setFlash stores a message that the next page of session id shows once.
func (s *sessions) setFlash(id, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess, ok := s.m[id]; ok {
		sess.flash = msg
		s.m[id] = sess
	}
}

// takeFlash returns and clears the session's message.
func (s *sessions) takeFlash(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.m[id]
	if !ok || sess.flash == "" {
		return ""
	}
	msg := sess.flash
	sess.flash = ""
	s.m[id] = sess
	return msg
}

func (s *sessions) delete(id string) {
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}

func sessionCookie(r *http.Request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     cookieName,
		Value:    value,
		Path:     "/ui",
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	}
}

// sameOrigin reports whether a state-changing request comes from a page of
// this host: its Origin header, or when absent its Referer, must name
// r.Host. A request with neither is refused (browsers send Origin on every
// POST).
func sameOrigin(r *http.Request) bool {
	src := r.Header.Get("Origin")
	if src == "" || src == "null" {
		src = r.Header.Get("Referer")
	}
	if src == "" {
		return false
	}
	u, err := url.Parse(src)
	if err != nil || u.Host == "" {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

// validCSRF reports whether r carries sess's CSRF token in the form field
// or the header.
func validCSRF(r *http.Request, sess session) bool {
	got := r.Header.Get(csrfHeader)
	if got == "" {
		got = r.PostFormValue(csrfField)
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(sess.csrf)) == 1
}

// limiter is a token bucket per client address for login attempts:
// burst attempts at once, then one per interval. The table is bounded; when
// full, idle entries are dropped, and if none is idle everyone shares the
// pressure of a global bucket.
type limiter struct {
	now      func() time.Time
	burst    float64
	interval time.Duration

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

const maxLimiterEntries = 4096

// allow takes one token for addr, reporting false and the wait until the
// next token when there is none.
func (l *limiter) allow(addr string) (bool, time.Duration) {
	key := addr
	if host, _, err := net.SplitHostPort(addr); err == nil {
		key = host
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxLimiterEntries {
			for k, v := range l.buckets {
				if l.refill(v, now) >= l.burst {
					delete(l.buckets, k)
				}
			}
			if len(l.buckets) >= maxLimiterEntries {
				key = "*"
				b = l.buckets[key]
			}
		}
		if b == nil {
			b = &bucket{tokens: l.burst, at: now}
			l.buckets[key] = b
		}
	}
	b.tokens = l.refill(b, now)
	b.at = now
	if b.tokens < 1 {
		wait := time.Duration((1 - b.tokens) * float64(l.interval))
		return false, wait
	}
	b.tokens--
	return true, 0
}

func (l *limiter) refill(b *bucket, now time.Time) float64 {
	t := b.tokens + float64(now.Sub(b.at))/float64(l.interval)
	return min(t, l.burst)
}

// safeNext returns next when it is a path inside the dashboard, else the
// overview; it keeps the login redirect from becoming an open redirect.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/ui/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return "/ui/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Host != "" || u.Scheme != "" {
		return "/ui/"
	}
	return next
}
