package pool

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const cookieName = "shoal_sticky"

func stickyPool(t *testing.T, addrs ...string) (*Pool, *clock) {
	return newTestPool(t, Options{Sticky: Sticky{Cookie: cookieName, TTL: time.Hour, Secret: testSecret}}, addrs...)
}

func reqWith(c *http.Cookie) *http.Request {
	r := httptest.NewRequest("GET", "http://app.example/page", nil)
	if c != nil {
		r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	return r
}

func pickReq(t *testing.T, p *Pool, r *http.Request) Choice {
	t.Helper()
	ch, err := p.Pick(keyOf(p, r), nil)
	if err != nil {
		t.Fatalf("Pick: %v", err)
	}
	return ch
}

func TestStickyPinAndRepin(t *testing.T) {
	p, _ := stickyPool(t, "a", "b", "c")
	first := pickReq(t, p, reqWith(nil))
	ck := first.Cookie
	if ck == nil {
		t.Fatal("no cookie on first pick")
	}
	if ck.Name != cookieName || ck.Path != "/" || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.MaxAge != 3600 || ck.Secure {
		t.Fatalf("cookie attributes %+v", ck)
	}
	if strings.Contains(ck.Value, "a") && strings.Contains(ck.Value, first.Target.Addr()+":") {
		t.Fatal("cookie reveals the address")
	}
	pinned := first.Target.Addr()
	for range 20 {
		ch := pickReq(t, p, reqWith(ck))
		if ch.Target.Addr() != pinned || ch.Cookie != nil {
			t.Fatalf("pinned pick went to %s (cookie %v), want %s", ch.Target.Addr(), ch.Cookie, pinned)
		}
	}
	repin := func(why string) {
		t.Helper()
		ch := pickReq(t, p, reqWith(ck))
		if ch.Target.Addr() == pinned || ch.Cookie == nil {
			t.Fatalf("%s: picked %s with cookie %v; want a re-pin away from %s", why, ch.Target.Addr(), ch.Cookie, pinned)
		}
		ck, pinned = ch.Cookie, ch.Target.Addr()
		if again := pickReq(t, p, reqWith(ck)); again.Target.Addr() != pinned {
			t.Fatalf("%s: new pin not honoured", why)
		}
	}
	if err := p.SetHealth(pinned, false, "status 500"); err != nil {
		t.Fatal(err)
	}
	repin("unhealthy")
	if _, err := p.Drain(pinned, time.Minute); err != nil {
		t.Fatal(err)
	}
	repin("draining")
	// Removing the last good target leaves only the unhealthy first one:
	// the pool fails open to it and re-pins there.
	if _, err := p.Remove(pinned); err != nil {
		t.Fatal(err)
	}
	ch := pickReq(t, p, reqWith(ck))
	if ch.Target != first.Target || !ch.FailOpen || ch.Cookie == nil {
		t.Fatalf("after remove: %s failOpen=%v cookie=%v; want fail open to %s", ch.Target.Addr(), ch.FailOpen, ch.Cookie, first.Target.Addr())
	}
}

func TestStickyRemovedTarget(t *testing.T) {
	p, _ := stickyPool(t, "a", "b")
	ch := pickReq(t, p, reqWith(nil))
	idle, err := p.Remove(ch.Target.Addr())
	if err != nil {
		t.Fatal(err)
	}
	<-idle // nothing in flight: deleted at once
	next := pickReq(t, p, reqWith(ch.Cookie))
	if next.Target.Addr() == ch.Target.Addr() || next.Cookie == nil {
		t.Fatalf("removed pin: picked %s, cookie %v", next.Target.Addr(), next.Cookie)
	}
}

func TestStickyRetrySkipsPinned(t *testing.T) {
	p, _ := stickyPool(t, "a", "b")
	ch := pickReq(t, p, reqWith(nil))
	retry, err := p.Pick(keyOf(p, reqWith(ch.Cookie)), []*Target{ch.Target})
	if err != nil {
		t.Fatal(err)
	}
	if retry.Target == ch.Target || retry.Cookie == nil {
		t.Fatalf("retry picked %s cookie %v", retry.Target.Addr(), retry.Cookie)
	}
}

func TestStickyForgedIgnored(t *testing.T) {
	p, _ := stickyPool(t, "a", "b", "c")
	good := pickReq(t, p, reqWith(nil)).Cookie
	other := NewTargetID([]byte("another secret of 16+ bytes"), "a")
	flip := []byte(good.Value)
	if flip[10] == 'A' {
		flip[10] = 'B'
	} else {
		flip[10] = 'A'
	}
	for name, v := range map[string]string{
		"garbage":      "not-a-cookie",
		"empty":        "",
		"tampered":     string(flip),
		"other secret": SignCookie([]byte("another secret of 16+ bytes"), other, time.Now().Add(time.Hour)),
		"unknown id":   SignCookie(testSecret, NewTargetID(testSecret, "10.9.9.9:1"), time.Now().Add(time.Hour)),
		"truncated":    good.Value[:len(good.Value)-2],
	} {
		ch := pickReq(t, p, reqWith(&http.Cookie{Name: cookieName, Value: v}))
		if ch.Cookie == nil || ch.Cookie.Value == v {
			t.Errorf("%s cookie: no re-pin (cookie %v)", name, ch.Cookie)
		}
	}
}

func TestStickyExpiryAndRefresh(t *testing.T) {
	p, clk := stickyPool(t, "a", "b", "c")
	ch := pickReq(t, p, reqWith(nil))
	clk.Advance(20 * time.Minute)
	if c := pickReq(t, p, reqWith(ch.Cookie)); c.Cookie != nil || c.Target != ch.Target {
		t.Fatalf("fresh pin: cookie %v target %s", c.Cookie, c.Target.Addr())
	}
	clk.Advance(20 * time.Minute) // 40 of 60 minutes: past half, refresh
	c := pickReq(t, p, reqWith(ch.Cookie))
	if c.Cookie == nil || c.Target != ch.Target {
		t.Fatalf("refresh: cookie %v target %s", c.Cookie, c.Target.Addr())
	}
	clk.Advance(21 * time.Minute) // the old cookie expired; the refreshed one not
	if again := pickReq(t, p, reqWith(c.Cookie)); again.Target != ch.Target || again.Cookie != nil {
		t.Fatalf("refreshed pin lost")
	}
	if _, _, err := ParseCookie(testSecret, ch.Cookie.Value, clk.Now()); !errors.Is(err, ErrCookieExpired) {
		t.Fatalf("old cookie: %v, want expired", err)
	}
	if e := pickReq(t, p, reqWith(ch.Cookie)); e.Cookie == nil {
		t.Fatal("expired cookie not re-pinned")
	}
}

func TestStickySecureOverTLS(t *testing.T) {
	p, _ := stickyPool(t, "a")
	r := reqWith(nil)
	r.TLS = &tls.ConnectionState{}
	if ck := pickReq(t, p, r).Cookie; ck == nil || !ck.Secure {
		t.Fatalf("cookie over TLS %+v", ck)
	}
}

func TestStickyShortSecretDisabled(t *testing.T) {
	p, _ := newTestPool(t, Options{Sticky: Sticky{Cookie: "s", Secret: []byte("short")}}, "a")
	if ch := pickReq(t, p, reqWith(nil)); ch.Cookie != nil {
		t.Fatal("cookie issued with a short secret")
	}
}

func TestCookieRoundTrip(t *testing.T) {
	id := NewTargetID(testSecret, "10.0.0.1:3000")
	now := time.Unix(1_700_000_000, 0)
	for _, exp := range []time.Time{{}, now.Add(time.Hour)} {
		v := SignCookie(testSecret, id, exp)
		gotID, gotExp, err := ParseCookie(testSecret, v, now)
		if err != nil || gotID != id || !gotExp.Equal(exp) {
			t.Fatalf("exp %v: got %x %v %v", exp, gotID, gotExp, err)
		}
	}
	if NewTargetID(testSecret, "10.0.0.1:3000") != id || NewTargetID(testSecret, "10.0.0.2:3000") == id {
		t.Fatal("target ids not stable or not distinct")
	}
}

func sockReq(session string) *http.Request {
	return httptest.NewRequest("POST", "http://app.example/sockjs/123/"+session+"/xhr_streaming", nil)
}

func TestSockJSStableWhenTargetAdded(t *testing.T) {
	p, _ := newTestPool(t, Options{Sticky: Sticky{SockJSPrefixes: []string{"/sockjs/"}}}, "a", "b", "c")
	const sessions = 600
	before := map[string]string{}
	perTarget := map[string]int{}
	for i := range sessions {
		s := fmt.Sprintf("s%04dx", i)
		ch := pickReq(t, p, sockReq(s))
		if ch.Cookie != nil {
			t.Fatal("SockJS pin set a cookie")
		}
		before[s] = ch.Target.Addr()
		perTarget[ch.Target.Addr()]++
		for range 3 { // every request of the session lands on the same target
			if again := pickReq(t, p, sockReq(s)); again.Target.Addr() != before[s] {
				t.Fatalf("session %s moved from %s to %s", s, before[s], again.Target.Addr())
			}
		}
	}
	for _, a := range []string{"a", "b", "c"} {
		if perTarget[a] < 120 {
			t.Errorf("%s holds %d of %d sessions", a, perTarget[a], sessions)
		}
	}
	mustAdd(t, p, TargetSpec{Addr: "d"})
	moved := 0
	for s, was := range before {
		now := pickReq(t, p, sockReq(s)).Target.Addr()
		if now != was {
			if now != "d" {
				t.Fatalf("session %s moved %s -> %s, not to the new target", s, was, now)
			}
			moved++
		}
	}
	if moved < 80 || moved > 240 {
		t.Errorf("%d of %d sessions moved to the new target, want about a quarter", moved, sessions)
	}
	// Removing a target moves only its own sessions.
	if _, err := p.Drain("a", time.Minute); err != nil {
		t.Fatal(err)
	}
	for s, was := range before {
		now := pickReq(t, p, sockReq(s)).Target.Addr()
		if was != "a" && now != was && now != "d" {
			t.Fatalf("session %s on %s moved to %s when a drained", s, was, now)
		}
		if now == "a" {
			t.Fatalf("session %s still on draining a", s)
		}
	}
}

func TestSockJSSession(t *testing.T) {
	pre := []string{"/sockjs", "/echo"}
	for path, want := range map[string]string{
		"/sockjs/123/abcdef/xhr_streaming": "abcdef",
		"/sockjs/1/s/websocket":            "s",
		"/echo/000/sess-1/xhr_send":        "sess-1",
		"/sockjs/info":                     "",
		"/sockjs/123/abcdef":               "",
		"/sockjs/123/abc.def/xhr":          "",
		"/sockjs/123/abcdef/xhr/extra":     "",
		"/sockjs/123/abcdef/unknown":       "",
		"/sockjs//abcdef/xhr":              "",
		"/sockjsX/1/a/xhr":                 "",
		"/sockjs/iframe.html":              "",
		"/other/1/a/xhr":                   "",
	} {
		got, ok := SockJSSession(path, pre)
		if got != want || ok != (want != "") {
			t.Errorf("SockJSSession(%q) = %q, %v; want %q", path, got, ok, want)
		}
	}
	if got, ok := SockJSSession("/1/root/xhr", []string{""}); !ok || got != "root" {
		t.Errorf("root prefix: %q %v", got, ok)
	}
}

func FuzzParseCookie(f *testing.F) {
	now := time.Unix(1_700_000_000, 0)
	id := NewTargetID(testSecret, "10.0.0.1:80")
	f.Add(SignCookie(testSecret, id, now.Add(time.Hour)))
	f.Add(SignCookie(testSecret, id, time.Time{}))
	f.Add("")
	f.Add("AAAA")
	f.Add(strings.Repeat("_", 55))
	f.Fuzz(func(t *testing.T, v string) {
		gotID, exp, err := ParseCookie(testSecret, v, now)
		if err != nil {
			if !errors.Is(err, ErrCookieInvalid) && !errors.Is(err, ErrCookieExpired) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		// Anything accepted must be exactly what we would sign.
		if re := SignCookie(testSecret, gotID, exp); re != v {
			t.Fatalf("accepted %q, which re-signs as %q", v, re)
		}
	})
}

func FuzzSockJSSession(f *testing.F) {
	for _, s := range []string{"/sockjs/123/abcdef/xhr_streaming", "/sockjs/info", "/sockjs//x/xhr", "/sockjs/1/2/3/4", "/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		sess, ok := SockJSSession(path, []string{"/sockjs", ""})
		if !ok {
			return
		}
		if sess == "" || strings.ContainsAny(sess, "/.") || !strings.Contains(path, "/"+sess+"/") {
			t.Fatalf("session %q from %q", sess, path)
		}
	})
}

func TestCookieValue(t *testing.T) {
	for _, tc := range []struct {
		line, want string
		ok         bool
	}{
		{"s=abc", "abc", true},
		{"a=1; s=abc; b=2", "abc", true},
		{"  s = abc", " abc", true}, // the name is trimmed, the value is not (as net/http)
		{`s="abc"`, "abc", true},
		{`s="a"b"; s=ok`, "ok", true}, // an invalid value is skipped
		{"S=abc", "", false},
		{"ss=abc;s=", "", true},
		{"x=1", "", false},
		{"", "", false},
	} {
		got, ok := CookieValue(tc.line, "s")
		if got != tc.want || ok != tc.ok {
			t.Errorf("CookieValue(%q) = %q, %v; want %q, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
}

// FuzzCookieValue holds CookieValue to net/http's Request.Cookie.
func FuzzCookieValue(f *testing.F) {
	for _, s := range []string{"s=abc", "a=1; s=abc", `s="q"`, `s="a"b"; s=ok`, "s=", " s=1 ;s=2", "s=\x00; s=x", "s=a b", "s=a,b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		got, ok := CookieValue(line, "s")
		r := &http.Request{Header: http.Header{"Cookie": {line}}}
		c, err := r.Cookie("s")
		if err != nil {
			if ok {
				t.Fatalf("CookieValue(%q) = %q; net/http finds none", line, got)
			}
			return
		}
		if !ok || got != c.Value {
			t.Fatalf("CookieValue(%q) = %q, %v; net/http %q", line, got, ok, c.Value)
		}
	})
}
