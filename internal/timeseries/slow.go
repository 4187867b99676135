package timeseries

import (
	"slices"
	"sync"
	"time"
)

// SlowRequest is one request kept by a Slow keeper. Its durations split
// Total into where the time went, as measured at the balancer.
type SlowRequest struct {
	Time      time.Time `json:"time"`
	RequestID string    `json:"request_id"`
	Method    string    `json:"method"`
	Host      string    `json:"host"`
	Path      string    `json:"path"`
	Route     string    `json:"route"`
	Group     string    `json:"group"`
	Target    string    `json:"target"`
	Status    int       `json:"status"`
	// Total is from the request's headers being read to the last byte of
	// the response written.
	Total time.Duration `json:"total"`
	// Queue is the time waiting at the balancer: from the headers being read
	// to the request being written upstream (picking, connecting, retries).
	Queue time.Duration `json:"queue"`
	// TTFB is the target's time to first byte: from the request written
	// upstream to the response headers received.
	TTFB time.Duration `json:"ttfb"`
	// Transfer is the copy of the response body to the client.
	Transfer time.Duration `json:"transfer"`
	// RTT is the client connection's round-trip time when the request
	// ended (TCP_INFO); 0 when not known. The client waited about
	// Total+RTT: the request's way in and the answer's way out are
	// outside Total.
	RTT time.Duration `json:"rtt,omitempty"`
}

// SlowOptions configures a Slow keeper. The zero value is usable.
type SlowOptions struct {
	// K is how many requests Top returns at most. Zero means 50.
	K int
	// Window is how far back requests are kept, rounded up to whole
	// minutes. Zero means 15 minutes.
	Window time.Duration
}

// Slow keeps the K slowest requests of each of the last Window minutes, so
// that Top can answer "the K slowest of the last N minutes" in fixed memory.
// It is safe for concurrent use; the zero value is not usable, call NewSlow.
type Slow struct {
	k int

	mu      sync.Mutex
	minutes []slowMinute // ring indexed by unix minute
}

type slowMinute struct {
	min int64
	// reqs is a min-heap on Total of at most k requests.
	reqs []SlowRequest
}

// NewSlow returns an empty keeper.
func NewSlow(opts SlowOptions) *Slow {
	if opts.K <= 0 {
		opts.K = 50
	}
	if opts.Window <= 0 {
		opts.Window = 15 * time.Minute
	}
	n := int((opts.Window + time.Minute - 1) / time.Minute)
	s := &Slow{k: opts.K, minutes: make([]slowMinute, n)}
	for i := range s.minutes {
		s.minutes[i].reqs = make([]SlowRequest, 0, opts.K)
	}
	return s
}

// Offer considers r; it is kept when it is among the K slowest of its
// minute (r.Time). Offer does not allocate.
func (s *Slow) Offer(r SlowRequest) {
	m := r.Time.Unix() / 60
	s.mu.Lock()
	defer s.mu.Unlock()
	sm := &s.minutes[int(m%int64(len(s.minutes)))]
	if sm.min != m {
		if sm.min > m {
			return // older than the window
		}
		sm.min = m
		sm.reqs = sm.reqs[:0]
	}
	h := sm.reqs
	if len(h) < s.k {
		h = append(h, r)
		up(h, len(h)-1)
		sm.reqs = h
		return
	}
	if r.Total <= h[0].Total {
		return
	}
	h[0] = r
	down(h, 0)
}

func up(h []SlowRequest, i int) {
	for i > 0 {
		p := (i - 1) / 2
		if h[p].Total <= h[i].Total {
			return
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
}

func down(h []SlowRequest, i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		c := l
		if r := l + 1; r < len(h) && h[r].Total < h[l].Total {
			c = r
		}
		if h[i].Total <= h[c].Total {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}

// Top returns at most n (at most K; n <= 0 means K) of the slowest requests
// of the minutes in the window ending at now, slowest first.
func (s *Slow) Top(now time.Time, n int) []SlowRequest {
	if n <= 0 || n > s.k {
		n = s.k
	}
	nowMin := now.Unix() / 60
	oldest := nowMin - int64(len(s.minutes)) + 1
	var all []SlowRequest
	s.mu.Lock()
	for i := range s.minutes {
		if sm := &s.minutes[i]; sm.min >= oldest && sm.min <= nowMin {
			all = append(all, sm.reqs...)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(all, func(a, b SlowRequest) int {
		if a.Total != b.Total {
			if a.Total > b.Total {
				return -1
			}
			return 1
		}
		return b.Time.Compare(a.Time)
	})
	if len(all) > n {
		all = all[:n]
	}
	return all
}
