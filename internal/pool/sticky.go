package pool

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"time"
)

// Cookie errors returned by ParseCookie.
var (
	ErrCookieInvalid = errors.New("sticky cookie invalid")
	ErrCookieExpired = errors.New("sticky cookie expired")
)

// TargetID identifies a target in a sticky cookie without revealing its
// address. It is derived from the address and the sticky secret, so every
// balancer sharing the secret agrees on it across restarts.
type TargetID [16]byte

// NewTargetID returns the id of the target at addr under secret.
func NewTargetID(secret []byte, addr string) TargetID {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("shoal target id\x00"))
	m.Write([]byte(addr))
	var id TargetID
	copy(id[:], m.Sum(nil))
	return id
}

// Cookie value layout before base64url (no padding):
//
//	version (1) | expiry unix seconds, big endian, 0 = none (8) | TargetID (16) | HMAC-SHA256 of the preceding bytes, truncated (16)
const (
	cookieVersion = 1
	cookieBody    = 1 + 8 + len(TargetID{})
	cookieMAC     = 16
	cookieLen     = cookieBody + cookieMAC
)

// SignCookie returns a cookie value pinning to id until expires (the zero
// time means no expiry, for session cookies), signed with secret.
func SignCookie(secret []byte, id TargetID, expires time.Time) string {
	var b [cookieLen]byte
	b[0] = cookieVersion
	if !expires.IsZero() {
		binary.BigEndian.PutUint64(b[1:9], uint64(max(expires.Unix(), 1)))
	}
	copy(b[9:cookieBody], id[:])
	copy(b[cookieBody:], cookieSum(secret, b[:cookieBody]))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ParseCookie verifies a value made by SignCookie with the same secret and
// returns the target id and expiry (zero for none). It returns
// ErrCookieInvalid for anything malformed, forged or signed with another
// secret, and ErrCookieExpired once now is at or past the expiry. It is
// safe on arbitrary input and compares the signature in constant time.
func ParseCookie(secret []byte, value string, now time.Time) (TargetID, time.Time, error) {
	var b [cookieLen]byte
	if base64.RawURLEncoding.EncodedLen(cookieLen) != len(value) {
		return TargetID{}, time.Time{}, ErrCookieInvalid
	}
	if n, err := base64.RawURLEncoding.Strict().Decode(b[:], []byte(value)); err != nil || n != cookieLen {
		return TargetID{}, time.Time{}, ErrCookieInvalid
	}
	if b[0] != cookieVersion || !hmac.Equal(b[cookieBody:], cookieSum(secret, b[:cookieBody])) {
		return TargetID{}, time.Time{}, ErrCookieInvalid
	}
	var id TargetID
	copy(id[:], b[9:cookieBody])
	var exp time.Time
	if s := binary.BigEndian.Uint64(b[1:9]); s != 0 {
		if s > math.MaxInt64 {
			return TargetID{}, time.Time{}, ErrCookieInvalid
		}
		exp = time.Unix(int64(s), 0)
		if !now.Before(exp) {
			return TargetID{}, time.Time{}, ErrCookieExpired
		}
	}
	return id, exp, nil
}

func cookieSum(secret, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("shoal sticky\x00"))
	m.Write(body)
	return m.Sum(nil)[:cookieMAC]
}

// sockJSTransports are the SockJS transport names that follow a session id
// in a URL (SockJS protocol 0.3).
var sockJSTransports = [...]string{
	"websocket", "xhr", "xhr_send", "xhr_streaming",
	"eventsource", "htmlfile", "jsonp", "jsonp_send",
}

// SockJSSession returns the session id of a SockJS session URL path
// <prefix>/<server>/<session>/<transport> under one of prefixes (given
// without a trailing slash; "" stands for the root). Server and session
// must be non-empty and contain neither '/' nor '.', as the SockJS protocol
// requires; transport must be a known SockJS transport. Other paths, such
// as <prefix>/info, report false.
func SockJSSession(path string, prefixes []string) (string, bool) {
	session, _, ok := SockJSURL(path, prefixes)
	return session, ok
}

// SockJSURL splits a SockJS session URL path as SockJSSession does and
// also returns its transport ("xhr", "xhr_streaming", "websocket" ...).
// It allocates nothing.
func SockJSURL(path string, prefixes []string) (session, transport string, ok bool) {
	for _, pre := range prefixes {
		if len(path) <= len(pre) || !strings.HasPrefix(path, pre) || path[len(pre)] != '/' {
			continue
		}
		rest := path[len(pre)+1:]
		server, rest, ok := strings.Cut(rest, "/")
		if !ok || !sockJSToken(server) {
			continue
		}
		session, transport, ok := strings.Cut(rest, "/")
		if !ok || !sockJSToken(session) {
			continue
		}
		for _, tr := range sockJSTransports {
			if transport == tr {
				return session, tr, true
			}
		}
	}
	return "", "", false
}

func sockJSToken(s string) bool {
	return s != "" && strings.IndexByte(s, '.') < 0 && strings.IndexByte(s, '/') < 0
}

// hrwScore is the weighted rendezvous (highest random weight) score of a
// target for key: weight / -ln(u) with u uniform in (0,1) from a hash of
// the target's seed and key. The target with the highest score wins, so
// adding or removing a target moves only the keys it wins or held.
func hrwScore(seed uint64, key string, weight int) float64 {
	h := seed ^ 0xcbf29ce484222325
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= 0x100000001b3
	}
	// splitmix64 finalizer: FNV's low bits mix poorly.
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	u := (float64(h>>11) + 0.5) / (1 << 53)
	return float64(weight) / -math.Log(u)
}
