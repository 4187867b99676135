package controller

import (
	"log/slog"
	"sync"
	"time"
)

// Event is one recorded change of the group: an instance changing state,
// a scale, a new release, a crash-loop backoff. Reasons never hold secret
// values.
type Event struct {
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	Type     string    `json:"type"` // state, scale, release, backoff, shoal
	Instance string    `json:"instance,omitempty"`
	Release  int       `json:"release,omitempty"`
	From     string    `json:"from,omitempty"`
	State    string    `json:"state,omitempty"`
	Addr     string    `json:"addr,omitempty"`
	Reason   string    `json:"reason"`
}

// eventLog queues events without blocking (callers hold Controller.mu)
// and writes them to the store, in order, from one goroutine.
type eventLog struct {
	write func([]Event) error
	log   *slog.Logger
	now   func() time.Time

	mu     sync.Mutex
	queue  []Event
	closed bool
	wake   chan struct{}
	subs   map[chan struct{}]struct{}
}

func newEventLog(write func([]Event) error, log *slog.Logger, now func() time.Time) *eventLog {
	return &eventLog{write: write, log: log, now: now, wake: make(chan struct{}, 1), subs: map[chan struct{}]struct{}{}}
}

// add queues e, stamping its time. It never blocks.
func (l *eventLog) add(e Event) {
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	l.mu.Lock()
	l.queue = append(l.queue, e)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// run writes queued events until close, then writes the rest and returns.
func (l *eventLog) run() {
	for {
		<-l.wake
		l.mu.Lock()
		batch, closed := l.queue, l.closed
		l.queue = nil
		l.mu.Unlock()
		if len(batch) > 0 {
			if err := l.write(batch); err != nil {
				l.log.Error("record events", "error", err, "events", len(batch))
			}
			l.notify()
		}
		if closed {
			return
		}
	}
}

// close makes run write what is queued and return.
func (l *eventLog) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// subscribe returns a channel that receives a value (coalesced) after new
// events are stored, and a function to unsubscribe.
func (l *eventLog) subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	l.mu.Lock()
	l.subs[ch] = struct{}{}
	l.mu.Unlock()
	return ch, func() {
		l.mu.Lock()
		delete(l.subs, ch)
		l.mu.Unlock()
	}
}

func (l *eventLog) notify() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for ch := range l.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
