package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// LoadOptions shape a Load. The zero value is 4 workers sending GETs back
// to back, each over its own keep-alive connection, a 15 s bound on each
// request, a 200 answer counting as success.
type LoadOptions struct {
	// Workers is the number of clients; each has one request in flight
	// at a time. Default 4.
	Workers int
	// Client gives worker i its client. Default: a client of its own
	// (no proxy, keep-alive) with a Timeout of 15 s.
	Client func(i int) *http.Client
	// Every paces each worker: it starts a request at most this often.
	// Zero: back to back.
	Every time.Duration
	// Max bounds the requests of each worker. Default 1,000,000.
	Max int
	// Check judges an answer read whole; it returns a label kept with
	// the result (Labels counts them) and an error for a failed request.
	// Default: any status but 200 fails, with an empty label.
	Check func(resp *http.Response, body []byte) (label string, err error)
	// Keep keeps every request's LoadResult for Stop to return.
	Keep bool
}

// LoadResult is one request of a Load.
type LoadResult struct {
	At    time.Time     // when it was sent
	Took  time.Duration // until its body was read or it failed
	Label string        // Check's label
	Err   error         // nil when it succeeded
}

// Load is constant GET load on one URL, for tests that must see zero
// failed requests through a kill, a deploy or a handoff. A request cut
// short because the context ended is not counted: the test fails on its
// own deadline instead. Stop lets the requests in flight finish and counts
// them.
type Load struct {
	quit    chan struct{}
	done    chan struct{}
	wg      sync.WaitGroup
	clients []*http.Client

	ok, failed atomic.Int64

	mu       sync.Mutex
	failures []string // the first 10, with their time
	first    time.Time
	last     time.Time
	slowest  time.Duration
	labels   map[string]int64
	results  []LoadResult
}

// StartLoad starts load on url until ctx ends, Stop is called, or every
// worker has sent Max requests.
func StartLoad(ctx context.Context, url string, o LoadOptions) *Load {
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.Max <= 0 {
		o.Max = 1_000_000
	}
	if o.Client == nil {
		o.Client = func(int) *http.Client {
			return &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{Proxy: nil}}
		}
	}
	if o.Check == nil {
		o.Check = func(resp *http.Response, _ []byte) (string, error) {
			if resp.StatusCode != http.StatusOK {
				return "", errors.New(resp.Status)
			}
			return "", nil
		}
	}
	l := &Load{quit: make(chan struct{}), done: make(chan struct{}), labels: map[string]int64{}}
	for i := range o.Workers {
		c := o.Client(i)
		l.clients = append(l.clients, c)
		l.wg.Go(func() {
			var tick <-chan time.Time
			if o.Every > 0 {
				// Staggered, so the workers' requests spread over Every.
				select {
				case <-l.quit:
					return
				case <-ctx.Done():
					return
				case <-time.After(o.Every * time.Duration(i) / time.Duration(o.Workers)):
				}
				t := time.NewTicker(o.Every)
				defer t.Stop()
				tick = t.C
			}
			for range o.Max {
				select {
				case <-l.quit:
					return
				case <-ctx.Done():
					return
				default:
				}
				l.one(ctx, c, url, o)
				if tick != nil {
					select {
					case <-l.quit:
						return
					case <-ctx.Done():
						return
					case <-tick:
					}
				}
			}
		})
	}
	go func() {
		l.wg.Wait()
		close(l.done)
	}()
	return l
}

func (l *Load) one(ctx context.Context, c *http.Client, url string, o LoadOptions) {
	r := LoadResult{At: time.Now()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err == nil {
		var resp *http.Response
		if resp, err = c.Do(req); err == nil {
			var body []byte
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				r.Label, err = o.Check(resp, body)
			} else {
				err = fmt.Errorf("%s, body: %w", resp.Status, err)
			}
		}
	}
	if err != nil && ctx.Err() != nil {
		return
	}
	r.Took, r.Err = time.Since(r.At), err
	l.mu.Lock()
	defer l.mu.Unlock()
	if o.Keep {
		l.results = append(l.results, r)
	}
	if err != nil {
		l.failed.Add(1)
		if l.first.IsZero() {
			l.first = r.At
		}
		l.last = r.At
		if len(l.failures) < 10 {
			l.failures = append(l.failures, r.At.Format("15:04:05.000")+" "+err.Error())
		}
		return
	}
	l.ok.Add(1)
	l.slowest = max(l.slowest, r.Took)
	l.labels[r.Label]++
}

// OK is the number of requests answered so far.
func (l *Load) OK() int64 { return l.ok.Load() }

// Failed is the number of requests failed so far.
func (l *Load) Failed() int64 { return l.failed.Load() }

// Done is closed when every worker has stopped.
func (l *Load) Done() <-chan struct{} { return l.done }

// Labels counts the answered requests by Check's label.
func (l *Load) Labels() map[string]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int64, len(l.labels))
	for k, v := range l.labels {
		out[k] = v
	}
	return out
}

// Slowest is the longest answered request so far.
func (l *Load) Slowest() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.slowest
}

// WaitOK waits until n more requests than now were answered, or ctx ends.
func (l *Load) WaitOK(ctx context.Context, n int64) error {
	want := l.ok.Load() + n
	return WaitFor(ctx, func() error {
		if got := l.ok.Load(); got < want {
			return fmt.Errorf("load not flowing: %d of %d answers (%d failed)", got, want, l.failed.Load())
		}
		return nil
	})
}

// RequireFlowing fails t unless n more requests are answered within d.
func (l *Load) RequireFlowing(t testing.TB, what string, n int64, d time.Duration) {
	t.Helper()
	if err := l.WaitOK(Context(t, d), n); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// Stop ends the load: no new request; those in flight finish and are
// counted. It returns the kept results (Keep), in the order they ended.
func (l *Load) Stop() []LoadResult {
	select {
	case <-l.quit:
	default:
		close(l.quit)
	}
	<-l.done
	for _, c := range l.clients {
		c.CloseIdleConnections()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.results)
}

// RequireNoFailure fails t now (Fatalf) if a request failed so far,
// naming how many, when the first and last failed, and the first ten.
func (l *Load) RequireNoFailure(t testing.TB, what string) {
	t.Helper()
	if err := l.failure(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// Check logs the load's totals and fails t (Errorf) if a request failed;
// call it after Stop.
func (l *Load) Check(t testing.TB, what string) {
	t.Helper()
	t.Logf("%s: %d requests answered, %d failed, slowest %v", what, l.OK(), l.Failed(), l.Slowest())
	if err := l.failure(); err != nil {
		t.Errorf("%s: %v", what, err)
	}
}

func (l *Load) failure() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.failed.Load()
	if n == 0 {
		return nil
	}
	return fmt.Errorf("%d of %d requests failed between %s and %s; the first: %s", n, n+l.ok.Load(),
		l.first.Format("15:04:05.000"), l.last.Format("15:04:05.000"), strings.Join(l.failures, "; "))
}
