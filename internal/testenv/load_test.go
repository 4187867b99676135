package testenv

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestLoadCountsAndLabels: every third answer is a 503; Load counts the
// 200s and the failures, labels answers by Check, keeps every result, and
// stops at Max per worker.
func TestLoadCountsAndLabels(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		i := n.Add(1)
		if i%3 == 0 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "v%d", i%3)
	}))
	defer srv.Close()
	l := StartLoad(Context(t, 30*time.Second), srv.URL, LoadOptions{
		Workers: 3,
		Max:     10,
		Keep:    true,
		Check: func(resp *http.Response, body []byte) (string, error) {
			if resp.StatusCode != http.StatusOK {
				return "", fmt.Errorf("%s", resp.Status)
			}
			return string(body), nil
		},
	})
	select {
	case <-l.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("30 requests did not end within 30s")
	}
	res := l.Stop()
	if len(res) != 30 || l.OK()+l.Failed() != 30 {
		t.Fatalf("%d results, %d ok + %d failed, want 30", len(res), l.OK(), l.Failed())
	}
	if l.Failed() != 10 {
		t.Errorf("%d failed, want 10 (every third)", l.Failed())
	}
	labels := l.Labels()
	if labels["v1"] != 10 || labels["v2"] != 10 || len(labels) != 2 {
		t.Errorf("labels %v, want v1 and v2 10 each", labels)
	}
	for _, r := range res {
		if (r.Err != nil) == (r.Label != "") || r.At.IsZero() || r.Took <= 0 {
			t.Errorf("result %+v: a failure has no label, a success has one, both a time", r)
		}
	}
	ft := &fakeT{}
	l.Check(ft, "phase")
	if !strings.Contains(ft.err, "phase: 10 of 30 requests failed") || !strings.Contains(ft.err, "503") {
		t.Errorf("Check reported %q", ft.err)
	}
}

// TestLoadIgnoresRequestsCutByContext: requests in flight when the
// context ends are not failures; Stop after that returns at once.
func TestLoadIgnoresRequestsCutByContext(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	l := StartLoad(ctx, srv.URL, LoadOptions{Workers: 2})
	cancel()
	l.Stop()
	if l.Failed() != 0 || l.OK() != 0 {
		t.Errorf("%d ok, %d failed after the context ended; want none counted", l.OK(), l.Failed())
	}
	ft := &fakeT{}
	l.Check(ft, "cut")
	if ft.err != "" {
		t.Errorf("Check failed: %s", ft.err)
	}
}

// TestLoadPacesWorkers: with Every, each worker sends at most one request
// per period, so a bounded number arrive within a bounded time.
func TestLoadPacesWorkers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer srv.Close()
	start := time.Now()
	l := StartLoad(Context(t, 30*time.Second), srv.URL, LoadOptions{Workers: 2, Every: 50 * time.Millisecond, Max: 3})
	<-l.Done()
	l.Stop()
	// Each worker: 3 requests and 3 waits of 50 ms (the first staggered).
	if took := time.Since(start); took < 100*time.Millisecond {
		t.Errorf("6 paced requests took %v, want at least two periods", took)
	}
	if l.OK() != 6 {
		t.Errorf("%d answered, want 6", l.OK())
	}
}

// fakeT records what a check reports.
type fakeT struct {
	testing.TB
	err string
}

func (f *fakeT) Helper()                        {}
func (f *fakeT) Logf(string, ...any)            {}
func (f *fakeT) Errorf(format string, a ...any) { f.err += fmt.Sprintf(format, a...) }
func (f *fakeT) Fatalf(format string, a ...any) { f.err += fmt.Sprintf(format, a...) }
