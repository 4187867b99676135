package lb

import (
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestH2FallbackInformational: a stream the loops hand to the handler (a
// percent-encoded path) gets the target's 103 Early Hints with its Link
// field before the answer, which does not carry that field, and a client
// that sent "Expect: 100-continue" and waits for it before sending its
// body gets 100 Continue.
func TestH2FallbackInformational(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, "got "+string(b))
	})
	lb, c := h2FastLB(t, baseConfig(be.addr))
	base := "https://" + lb.addr

	var mu sync.Mutex
	var infos []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		mu.Lock()
		defer mu.Unlock()
		infos = append(infos, http.StatusText(code)+" "+h.Get("Link"))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", base+"/a%20b", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "got " || resp.Header.Get("Link") != "" {
		t.Fatalf("answer %d %q Link %q", resp.StatusCode, body, resp.Header.Get("Link"))
	}
	mu.Lock()
	got := strings.Join(infos, "|")
	mu.Unlock()
	if got != "Early Hints </style.css>; rel=preload; as=style" {
		t.Errorf("informational answers %q", got)
	}

	// Expect: 100-continue: the body is sent only once 100 came.
	pr, pw := io.Pipe()
	got100 := make(chan struct{})
	var once sync.Once
	trace = &httptrace.ClientTrace{Got100Continue: func() { once.Do(func() { close(got100) }) }}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ = http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), "POST", base+"/a%20b", pr)
	req.Header.Set("Expect", "100-continue")
	sent := make(chan error, 1)
	go func() {
		select {
		case <-got100:
			_, err := io.WriteString(pw, "body")
			pw.CloseWithError(err)
			sent <- err
		case <-ctx.Done():
			pw.CloseWithError(ctx.Err())
			sent <- ctx.Err()
		}
	}()
	resp, err = c.Do(req)
	if err != nil {
		t.Fatalf("POST with Expect: %v (body: %v)", err, <-sent)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := <-sent; err != nil {
		t.Fatalf("no 100 Continue before the answer: %v", err)
	}
	if resp.StatusCode != 200 || string(body) != "got body" {
		t.Fatalf("POST answer %d %q", resp.StatusCode, body)
	}
}

// TestH2FallbackRTT: a stream the loops hand to the handler records the
// client connection's round-trip time, in the access log and the
// observer, as streams served on the loops do.
func TestH2FallbackRTT(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	logs := &syncBuffer{}
	obs := &recObserver{}
	cfg := baseConfig(be.addr)
	cfg.AccessLog = logs
	cfg.Observer = obs
	lb, c := h2FastLB(t, cfg)
	resp, body := h2Get(t, c, "GET", "https://"+lb.addr+"/a%20b", nil)
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("answer %d %q", resp.StatusCode, body)
	}
	waitFor(t, 30*time.Second, "the observed record", func() bool { return len(obs.all()) == 1 })
	rec := obs.all()[0]
	if rec.RTT <= 0 {
		t.Errorf("observed RTT %v for a fallback stream", rec.RTT)
	}
	waitFor(t, 30*time.Second, "the access log line", func() bool { return strings.Contains(logs.String(), "\n") })
	if l := logs.String(); !strings.Contains(l, `"rtt_ms":`) || !strings.Contains(l, `a b`) {
		t.Errorf("access log line without rtt_ms: %s", l)
	}
}
