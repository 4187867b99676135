package lb

import (
	"io"
	"net/http"
	"sync"
	"testing"
	"time"
)

// recObserver keeps copies of the records it gets.
type recObserver struct {
	mu   sync.Mutex
	recs []RequestRecord
}

func (o *recObserver) ObserveRequest(r *RequestRecord) {
	o.mu.Lock()
	o.recs = append(o.recs, *r)
	o.mu.Unlock()
}

func (o *recObserver) all() []RequestRecord {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]RequestRecord(nil), o.recs...)
}

func TestObserverAndLatencyHistogram(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(500)
		}
		io.WriteString(w, "hello")
	})
	obs := &recObserver{}
	cfg := baseConfig(be.addr)
	cfg.Observer = obs
	lb := start(t, cfg)
	c := client(t)
	get(t, c, lb.url+"/ok?q=1", "X-Request-Id", "req-1", "Host", "app.test:8080")
	get(t, c, lb.url+"/fail")

	// Records arrive after the response is complete, so maybe after the
	// client has it.
	waitFor(t, 5*time.Second, "two records", func() bool { return len(obs.all()) == 2 })
	recs := obs.all()
	if len(recs) != 2 {
		t.Fatalf("observer got %d records, want 2: %+v", len(recs), recs)
	}
	r := recs[0]
	if r.RequestID != "req-1" || r.Method != "GET" || r.Host != "app.test:8080" || r.Path != "/ok" ||
		r.Route != "all" || r.Pool != "app" || r.Target != be.addr || r.Status != 200 || r.BytesOut != 5 ||
		r.Retries != 0 || r.Err != "" || r.Start.IsZero() {
		t.Errorf("record %+v", r)
	}
	if r.Total <= 0 || r.Queue <= 0 || r.TTFB <= 0 || r.Queue+r.TTFB+r.Transfer > r.Total {
		t.Errorf("phases total=%v queue=%v ttfb=%v transfer=%v", r.Total, r.Queue, r.TTFB, r.Transfer)
	}
	if recs[1].Status != 500 || recs[1].Path != "/fail" {
		t.Errorf("second record %+v", recs[1])
	}

	bounds, counts := lb.LatencyHistogram("app")
	if len(bounds) == 0 || len(counts) != len(bounds)+1 {
		t.Fatalf("histogram shape: %d bounds, %d counts", len(bounds), len(counts))
	}
	var n uint64
	for _, c := range counts {
		n += c
	}
	if n != 2 {
		t.Errorf("histogram counts %v sum to %d, want 2", counts, n)
	}
	if b, c := lb.LatencyHistogram("nope"); b != nil || c != nil {
		t.Errorf("unknown pool: %v %v", b, c)
	}
}

// TestObserverSeesErrors: a request the balancer answers itself is
// observed with its status and error, and a nil observer is fine.
func TestObserverSeesErrors(t *testing.T) {
	obs := &recObserver{}
	cfg := baseConfig(closedAddr(t))
	cfg.Pools[0].Retries = -1
	cfg.Observer = obs
	lb := start(t, cfg)
	resp, _ := get(t, client(t), lb.url+"/x")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d", resp.StatusCode)
	}
	waitFor(t, 5*time.Second, "a record", func() bool { return len(obs.all()) == 1 })
	recs := obs.all()
	if len(recs) != 1 || recs[0].Status != http.StatusBadGateway || recs[0].Err == "" || recs[0].TTFB != 0 {
		t.Fatalf("records %+v", recs)
	}
}
