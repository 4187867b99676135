package timeseries

import (
	"sync"
	"time"
)

const (
	// Window is how far back a Store remembers.
	Window = time.Hour
	// Resolution is the period of a series' latency histograms: quantiles
	// are known per Resolution, counts per second.
	Resolution = 10 * time.Second

	ringSeconds = int64(Window / time.Second)
	resSeconds  = int64(Resolution / time.Second)
	ringHists   = ringSeconds / resSeconds
)

// OtherRoute is the route name under which a Store counts requests of new
// routes once MaxRoutes route series exist.
const OtherRoute = "(other)"

// Key names a series: a whole group (Route == "") or one route of a group.
type Key struct {
	Group string
	Route string
}

// Point is one step of a series.
type Point struct {
	// Time is the start of the step.
	Time time.Time
	// Requests and Errors are counts over the step; Errors are responses
	// with status >= 500 or no status at all (status 0).
	Requests int
	Errors   int
	// RPS is Requests divided by the step length in seconds.
	RPS float64
	// P50, P95 and P99 are latency quantiles over the 10-second histograms
	// that the step overlaps (merged, not averaged), so for a step shorter
	// than 10 s they cover the whole 10 s. Zero without requests.
	P50, P95, P99 time.Duration
}

// ErrorRate returns Errors/Requests, or 0 with no requests.
func (p Point) ErrorRate() float64 {
	if p.Requests == 0 {
		return 0
	}
	return float64(p.Errors) / float64(p.Requests)
}

// second is the counts of one second.
type second struct {
	sec         int64 // unix seconds; 0 = never written
	count, errs uint32
}

// hist is the latency histogram of one Resolution period.
type hist struct {
	start int64 // unix seconds / resSeconds; 0 = never written
	h     Histogram
}

// series is one Key's memory (about 360 KiB), guarded by mu.
type series struct {
	mu    sync.Mutex
	secs  [ringSeconds]second
	hists [ringHists]hist
}

// Options configures a Store. The zero value is usable.
type Options struct {
	// MaxRoutes bounds the number of route series over all groups (each
	// takes about 360 KiB). Requests of routes past the bound are counted
	// under OtherRoute of their group. Zero means 32.
	MaxRoutes int
	// MaxGauges bounds the number of gauges (about 43 KiB each); past it
	// the gauge written least recently is dropped. Zero means 512.
	MaxGauges int
}

// Store holds the series and gauges of the last hour. It is safe for
// concurrent use; the zero value is not usable, call NewStore.
type Store struct {
	opts Options

	mu     sync.RWMutex
	series map[Key]*series
	routes int
	gauges map[string]*gauge
}

// NewStore returns an empty Store.
func NewStore(opts Options) *Store {
	if opts.MaxRoutes <= 0 {
		opts.MaxRoutes = 32
	}
	if opts.MaxGauges <= 0 {
		opts.MaxGauges = 512
	}
	return &Store{opts: opts, series: make(map[Key]*series), gauges: make(map[string]*gauge)}
}

// lookup returns the series of k, creating it when create is set. A new
// route series past MaxRoutes is replaced by the group's OtherRoute series.
func (s *Store) lookup(k Key, create bool) *series {
	s.mu.RLock()
	ser := s.series[k]
	s.mu.RUnlock()
	if ser != nil || !create {
		return ser
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ser = s.series[k]; ser != nil {
		return ser
	}
	if k.Route != "" && k.Route != OtherRoute && s.routes >= s.opts.MaxRoutes {
		k.Route = OtherRoute
		if ser = s.series[k]; ser != nil {
			return ser
		}
	}
	ser = &series{}
	s.series[k] = ser
	if k.Route != "" {
		s.routes++
	}
	return ser
}

// Record counts one finished request of group (and of route, when not
// empty) at now: its status (0 when no response was written) and its total
// duration. It does not allocate once both series exist.
func (s *Store) Record(now time.Time, group, route string, status int, d time.Duration) {
	isErr := status >= 500 || status == 0
	s.lookup(Key{Group: group}, true).record(now.Unix(), isErr, d)
	if route != "" {
		s.lookup(Key{Group: group, Route: route}, true).record(now.Unix(), isErr, d)
	}
}

func (ser *series) record(sec int64, isErr bool, d time.Duration) {
	ser.mu.Lock()
	defer ser.mu.Unlock()
	c := &ser.secs[mod(sec, ringSeconds)]
	if c.sec != sec {
		if c.sec > sec {
			return // older than the window
		}
		*c = second{sec: sec}
	}
	c.count++
	if isErr {
		c.errs++
	}
	start := floorDiv(sec, resSeconds)
	h := &ser.hists[mod(start, ringHists)]
	if h.start != start {
		h.start = start
		h.h.Reset()
	}
	h.h.Observe(d)
}

func mod(a, n int64) int64 { return ((a % n) + n) % n }

func floorDiv(a, n int64) int64 {
	q := a / n
	if a%n != 0 && a < 0 {
		q--
	}
	return q
}

// mergeLocked adds the histograms of the periods overlapping [from, to)
// (unix seconds) to h.
func (ser *series) mergeLocked(h *Histogram, from, to int64) {
	for p := floorDiv(from, resSeconds); p*resSeconds < to; p++ {
		if hs := &ser.hists[mod(p, ringHists)]; hs.start == p {
			h.Merge(&hs.h)
		}
	}
}

// Keys returns the keys of every series, in no particular order.
func (s *Store) Keys() []Key {
	s.mu.RLock()
	defer s.mu.RUnlock()
	keys := make([]Key, 0, len(s.series))
	for k := range s.series {
		keys = append(keys, k)
	}
	return keys
}

// window clips [from, to) to the last Window before to, in unix seconds.
func window(from, to time.Time) (int64, int64) {
	f, t := from.Unix(), to.Unix()
	if t-f > ringSeconds {
		f = t - ringSeconds
	}
	return f, t
}

// Range returns the points of k for [from, to) in steps of step (rounded
// down to whole seconds, at least one second), at most the last Window.
// Steps without requests have zero counts. An unknown key returns zero
// points for every step. Callers usually end a range at the last finished
// step, since the current one is still counting.
func (s *Store) Range(k Key, from, to time.Time, step time.Duration) []Point {
	stepSec := max(int64(step/time.Second), 1)
	fromSec, toSec := window(from, to)
	if toSec <= fromSec {
		return nil
	}
	pts := make([]Point, (toSec-fromSec+stepSec-1)/stepSec)
	for i := range pts {
		pts[i].Time = time.Unix(fromSec+int64(i)*stepSec, 0)
	}
	ser := s.lookup(k, false)
	if ser == nil {
		return pts
	}
	var h Histogram
	ser.mu.Lock()
	defer ser.mu.Unlock()
	for i := range pts {
		p := &pts[i]
		start := fromSec + int64(i)*stepSec
		end := min(start+stepSec, toSec)
		for sec := start; sec < end; sec++ {
			if c := ser.secs[mod(sec, ringSeconds)]; c.sec == sec {
				p.Requests += int(c.count)
				p.Errors += int(c.errs)
			}
		}
		p.RPS = float64(p.Requests) / float64(stepSec)
		if p.Requests == 0 {
			continue
		}
		h.Reset()
		ser.mergeLocked(&h, start, end)
		p.P50, p.P95, p.P99 = h.Quantile(0.50), h.Quantile(0.95), h.Quantile(0.99)
	}
	return pts
}

// Summary is a series over a window.
type Summary struct {
	Key      Key
	Requests int
	Errors   int
	// RPS is Requests divided by the window length in seconds.
	RPS                float64
	P50, P95, P99, Max time.Duration
}

// Summarize returns k's totals over (now-window, now] and its quantiles
// over the 10-second histograms that overlap it; window is capped at
// Window.
func (s *Store) Summarize(k Key, now time.Time, win time.Duration) Summary {
	sum := Summary{Key: k}
	ser := s.lookup(k, false)
	if ser == nil {
		return sum
	}
	win = min(max(win, time.Second), Window)
	fromSec, toSec := window(now.Add(-win).Add(time.Second), now.Add(time.Second))
	var h Histogram
	ser.mu.Lock()
	for sec := fromSec; sec < toSec; sec++ {
		if c := ser.secs[mod(sec, ringSeconds)]; c.sec == sec {
			sum.Requests += int(c.count)
			sum.Errors += int(c.errs)
		}
	}
	ser.mergeLocked(&h, fromSec, toSec)
	ser.mu.Unlock()
	sum.RPS = float64(sum.Requests) / win.Seconds()
	sum.P50, sum.P95, sum.P99 = h.Quantile(0.50), h.Quantile(0.95), h.Quantile(0.99)
	sum.Max = h.Max()
	return sum
}
