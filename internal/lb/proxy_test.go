package lb

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// echoHeaders answers with the request's headers as "Key: value" lines.
func echoHeaders(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Connection", "X-Secret")
	w.Header().Set("X-Secret", "hop")
	w.Header().Set("Keep-Alive", "timeout=5")
	fmt.Fprintf(w, "Host: %s\n", r.Host)
	fmt.Fprintf(w, "Proto: %s\n", r.Proto)
	for k, vv := range r.Header {
		for _, v := range vv {
			fmt.Fprintf(w, "%s: %s\n", k, v)
		}
	}
}

func headerLines(body string) map[string][]string {
	m := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(body), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		m[k] = append(m[k], v)
	}
	return m
}

func TestForwardedHeadersUntrusted(t *testing.T) {
	be := newBackend(t, echoHeaders)
	lb := start(t, baseConfig(be.addr))
	resp, body := get(t, client(t), lb.url+"/x", "Host", "app.example.com",
		"X-Forwarded-For", "6.6.6.6", "X-Real-IP", "6.6.6.6", "Forwarded", "for=6.6.6.6",
		"X-Forwarded-Proto", "https", "X-Forwarded-Host", "evil.example",
		"Connection", "X-Drop-Me", "X-Drop-Me", "1", "Proxy-Authorization", "Basic Zm9vOmJhcg==",
		"Keep-Alive", "timeout=1", "Te", "trailers")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	h := headerLines(body)
	want := map[string]string{
		"Host":              "app.example.com",
		"X-Forwarded-For":   "127.0.0.1",
		"X-Real-Ip":         "127.0.0.1",
		"X-Forwarded-Proto": "http",
		"X-Forwarded-Host":  "app.example.com",
		"Forwarded":         "for=127.0.0.1;host=app.example.com;proto=http",
	}
	for k, v := range want {
		if got := h[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"X-Drop-Me", "Proxy-Authorization", "Keep-Alive", "Te"} {
		if _, ok := h[k]; ok {
			t.Errorf("hop-by-hop header %s reached the target", k)
		}
	}
	if id := h["X-Request-Id"]; len(id) != 1 || id[0] == "" || id[0] != resp.Header.Get("X-Request-Id") {
		t.Errorf("request id: target %q, client %q", id, resp.Header.Get("X-Request-Id"))
	}
	if resp.Header.Get("X-Secret") != "" || resp.Header.Get("Keep-Alive") != "" {
		t.Errorf("response hop-by-hop headers reached the client: %v", resp.Header)
	}
	// The custom Connection token hands this request to net/http even
	// with the fast path on: the fast path's own hop-by-hop handling is
	// covered by TestHopHeadersDroppedOnBothPaths.
	if f := lb.listeners["web"].fast; f != nil && f.requests.Load() != 0 {
		t.Errorf("fast path served %d requests, want 0 (handed over)", f.requests.Load())
	}
}

func TestForwardedHeadersTrusted(t *testing.T) {
	be := newBackend(t, echoHeaders)
	cfg := baseConfig(be.addr)
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	lb := start(t, cfg)
	resp, body := get(t, client(t), lb.url+"/x", "Host", "app.example.com",
		"X-Forwarded-For", "203.0.113.7", "X-Real-IP", "203.0.113.7",
		"Forwarded", `for="[2001:db8::1]";proto=https`, "X-Forwarded-Proto", "https",
		"X-Forwarded-Host", "public.example", "X-Request-Id", "abc-123")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	h := headerLines(body)
	want := map[string]string{
		"X-Forwarded-For":   "203.0.113.7, 127.0.0.1",
		"X-Real-Ip":         "203.0.113.7",
		"X-Forwarded-Proto": "https",
		"X-Forwarded-Host":  "public.example",
		"Forwarded":         `for="[2001:db8::1]";proto=https, for=127.0.0.1;host=app.example.com;proto=http`,
		"X-Request-Id":      "abc-123",
	}
	for k, v := range want {
		if got := h[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if got := resp.Header.Get("X-Request-Id"); got != "abc-123" {
		t.Errorf("client request id %q", got)
	}
}

func TestRequestIDGeneratedUnique(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Header.Get("X-Request-Id")) })
	lb := start(t, baseConfig(be.addr))
	c := client(t)
	seen := map[string]bool{}
	for i := 0; i < 20; i++ {
		resp, body := get(t, c, lb.url+"/", "X-Request-Id", "bad id with spaces")
		if body == "" || body != resp.Header.Get("X-Request-Id") || seen[body] || strings.Contains(body, " ") {
			t.Fatalf("request id %q (client %q)", body, resp.Header.Get("X-Request-Id"))
		}
		seen[body] = true
	}
}

func TestNoRoute404AndHostRouting(t *testing.T) {
	mk := func(name string) *backend {
		return newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })
	}
	exact, wild, any, api := mk("exact"), mk("wild"), mk("any"), mk("api")
	cfg := Config{
		Listeners: []Listener{{Name: "web", Addr: "127.0.0.1:0"}},
		Routes: []Route{
			{Name: "exact", Host: "app.example.com", Pool: "exact"},
			{Name: "wild", Host: "*.example.com", Pool: "wild"},
			{Name: "api", Host: "app.example.com", PathPrefix: "/api", Pool: "api"},
			{Name: "any", Host: "", PathPrefix: "/public", Pool: "any"},
		},
	}
	for name, be := range map[string]*backend{"exact": exact, "wild": wild, "any": any, "api": api} {
		cfg.Pools = append(cfg.Pools, PoolConfig{Name: name, Targets: targets(be.addr)})
	}
	lb := start(t, cfg)
	c := client(t)
	cases := []struct{ host, path, want string }{
		{"app.example.com", "/", "exact"},
		{"APP.Example.com:8080", "/x", "exact"},
		{"app.example.com", "/api/v1", "api"},
		{"app.example.com", "/apix", "exact"},
		{"a.b.example.com", "/", "wild"},
		{"example.com", "/public/x", "any"},
		{"other.test", "/public", "any"},
	}
	for _, tc := range cases {
		resp, body := get(t, c, lb.url+tc.path, "Host", tc.host)
		if resp.StatusCode != 200 || body != tc.want {
			t.Errorf("%s%s -> %d %q, want %q", tc.host, tc.path, resp.StatusCode, body, tc.want)
		}
	}
	resp, body := get(t, c, lb.url+"/", "Host", "other.test")
	if resp.StatusCode != 404 || !strings.Contains(body, "no route") {
		t.Errorf("no route: %d %q", resp.StatusCode, body)
	}
}

// TestStreamingFlushes checks that a server-sent event reaches the client
// while the target is still holding the response open.
func TestStreamingFlushes(t *testing.T) {
	release := make(chan struct{})
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
		io.WriteString(w, "data: two\n\n")
	})
	lb := start(t, baseConfig(be.addr))
	resp, err := client(t).Get(lb.url + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: one\n" {
		t.Fatalf("first event %q, %v", line, err)
	}
	close(release)
	rest, _ := io.ReadAll(br)
	if string(rest) != "\ndata: two\n\n" {
		t.Fatalf("rest %q", rest)
	}
}

func TestTrailersAndChunkedUpload(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "X-Sum")
		io.WriteString(w, string(b))
		w.Header().Set("X-Sum", fmt.Sprint(len(b)))
	})
	lb := start(t, baseConfig(be.addr))
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte("hello "))
		pw.Write([]byte("world"))
		pw.Close()
	}()
	resp, err := client(t).Post(lb.url+"/up", "text/plain", pr)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hello world" || resp.Trailer.Get("X-Sum") != "11" {
		t.Fatalf("body %q trailer %v", b, resp.Trailer)
	}
}

func TestMaintenance(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "app") })
	lb := start(t, baseConfig(be.addr))
	c := client(t)
	lb.SetMaintenance(&Maintenance{Page: "<h1>back soon</h1>", RetryAfter: 90 * time.Second})
	resp, body := get(t, c, lb.url+"/")
	if resp.StatusCode != 503 || body != "<h1>back soon</h1>" || resp.Header.Get("Retry-After") != "90" {
		t.Fatalf("maintenance: %d %q %q", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if !lb.Status().Maintenance {
		t.Error("status does not show maintenance")
	}
	lb.SetMaintenance(nil)
	if resp, body := get(t, c, lb.url+"/"); resp.StatusCode != 200 || body != "app" {
		t.Fatalf("after maintenance: %d %q", resp.StatusCode, body)
	}
}

func TestNoTarget503(t *testing.T) {
	cfg := baseConfig()
	lb := start(t, cfg)
	resp, _ := get(t, client(t), lb.url+"/")
	if resp.StatusCode != 503 {
		t.Fatalf("status %d, want 503", resp.StatusCode)
	}
}

func TestMaintenanceSurvivesReload(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "app") })
	cfg := baseConfig(be.addr)
	lb := start(t, cfg)
	lb.SetMaintenance(&Maintenance{Page: "down"})
	if err := lb.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if resp, body := get(t, client(t), lb.url+"/"); resp.StatusCode != 503 || body != "down" || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("after reload: %d %q", resp.StatusCode, body)
	}
}
