package benchkit

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Sorted returns a sorted copy of ds.
func Sorted(ds []time.Duration) []time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s
}

// Quantile returns the p-quantile (0 <= p <= 1) of sorted, a non-empty
// slice in ascending order, as the element at index p*len (nearest rank,
// clamped to the last).
func Quantile(sorted []time.Duration, p float64) time.Duration {
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

// Ms is d in milliseconds.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Table prints one row per measurement: its name padded to NameWidth,
// then median, p90 and max in milliseconds, each NumWidth wide with one
// decimal. The zero value prints to stdout with no padding.
type Table struct {
	W         io.Writer // nil means os.Stdout
	NameWidth int
	NumWidth  int
}

// Row prints the row for ds, which must not be empty.
func (t Table) Row(name string, ds []time.Duration) {
	w := t.W
	if w == nil {
		w = os.Stdout
	}
	s := Sorted(ds)
	fmt.Fprintf(w, "%-*s median %*.1fms  p90 %*.1fms  max %*.1fms\n", t.NameWidth, name,
		t.NumWidth, Ms(Quantile(s, 0.5)), t.NumWidth, Ms(Quantile(s, 0.9)), t.NumWidth, Ms(s[len(s)-1]))
}

// Tally counts the requests a load generator sent: those answered 200 and
// those that failed (an error or another status), and keeps what the
// first failures were. It is safe for concurrent use; the zero value is
// ready.
type Tally struct {
	ok, failed atomic.Int64

	mu    sync.Mutex
	first []string // the first maxFailures failures, with their time
}

// maxFailures is how many failures a Tally describes.
const maxFailures = 10

// Send sends req with hc, reads and closes the body, and counts the
// outcome, unless req's context has ended by then (a request cut short
// by the end of the load is not counted). It blocks for the request.
func (t *Tally) Send(hc *http.Client, req *http.Request) {
	resp, err := hc.Do(req)
	if req.Context().Err() != nil {
		if err == nil {
			resp.Body.Close()
		}
		return
	}
	if err != nil {
		t.fail(err.Error())
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.fail(resp.Status)
		return
	}
	t.ok.Add(1)
}

func (t *Tally) fail(what string) {
	t.failed.Add(1)
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.first) < maxFailures {
		t.first = append(t.first, time.Now().Format("15:04:05.000")+" "+what)
	}
}

// Failures describes the first failures (at most 10), each with the time
// it was counted: the error, or the status of the answer.
func (t *Tally) Failures() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.first)
}

// OK returns the number of requests answered 200.
func (t *Tally) OK() int64 { return t.ok.Load() }

// Failed returns the number of requests that failed.
func (t *Tally) Failed() int64 { return t.failed.Load() }
