package controller

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/internal/api"
)

// Bounds of the event log's retry of failed writes.
const (
	// maxPendingEvents bounds the events kept in memory while the store
	// cannot be written; beyond it the oldest are dropped and counted.
	maxPendingEvents = 10000
	eventRetryMin    = 100 * time.Millisecond
	eventRetryMax    = 5 * time.Second
)

// eventLog writes events to the store, in order, in one of two ways:
//
//   - add queues an event without blocking (callers may hold
//     Controller.mu) for the log's goroutine (run). These are the
//     controller's own observations (instance states, backoff, rollout
//     steps). A write that fails (a full disk) does not drop them: they
//     stay queued, in order, and are retried with backoff; the failures,
//     the number waiting and any dropped beyond maxPendingEvents are
//     counted, logged as errors and exported as metrics (Health, Metrics).
//   - record writes an event synchronously and returns the store's error.
//     It is for events that record an operator's action (scale, env): the
//     action is refused when its record cannot be written, so nothing an
//     operator does goes unrecorded. Queued events are written first, so
//     sequence numbers keep the order of the calls.
//
// Writers are serialised by wmu, which is held only around store writes
// (it guards nothing else); mu guards the queue and is never held during
// I/O.
type eventLog struct {
	write func([]api.Event) error // stores events, in order: all of them, or none and an error
	log   *slog.Logger
	now   func() time.Time

	wmu sync.Mutex // serialises store writes, so events are stored in order

	mu     sync.Mutex
	queue  []api.Event
	closed bool
	wake   chan struct{}
	subs   map[chan struct{}]struct{}

	failures atomic.Uint64 // failed store writes
	dropped  atomic.Uint64 // events dropped beyond maxPendingEvents
	pending  atomic.Int64  // events queued, not yet stored
	lastErr  atomic.Pointer[string]
	reg      *prometheus.Registry
}

func newEventLog(write func([]api.Event) error, log *slog.Logger, now func() time.Time) *eventLog {
	l := &eventLog{write: write, log: log, now: now, wake: make(chan struct{}, 1), subs: map[chan struct{}]struct{}{},
		reg: prometheus.NewRegistry()}
	l.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "shoal_event_write_errors_total",
			Help: "Failed writes of events to the store (a full or failing disk); the events are kept and retried.",
		}, func() float64 { return float64(l.failures.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shoal_events_pending",
			Help: "Events waiting to be written to the store; above 0 for long means the store cannot be written.",
		}, func() float64 { return float64(l.pending.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "shoal_events_dropped_total",
			Help: "Events dropped because more than 10000 waited for a store that could not be written.",
		}, func() float64 { return float64(l.dropped.Load()) }),
	)
	return l
}

// EventLogHealth says whether events reach the store.
type EventLogHealth struct {
	// Pending events wait for a store write that failed; they are retried.
	Pending int
	// WriteErrors counts failed writes since start; Dropped counts events
	// lost because too many waited.
	WriteErrors, Dropped uint64
	// LastError is the last write error, "" once a write succeeded again.
	LastError string
}

// health reports the log's state. Safe for concurrent use.
func (l *eventLog) health() EventLogHealth {
	h := EventLogHealth{Pending: int(l.pending.Load()), WriteErrors: l.failures.Load(), Dropped: l.dropped.Load()}
	if p := l.lastErr.Load(); p != nil {
		h.LastError = *p
	}
	return h
}

// problem describes, for Status, events that wait after a failed write;
// "" when every event is stored.
func (l *eventLog) problem() string {
	h := l.health()
	if h.LastError == "" && h.Dropped == 0 {
		return ""
	}
	msg := fmt.Sprintf("%d events not yet stored (retrying): %s", h.Pending, h.LastError)
	if h.Dropped > 0 {
		msg += fmt.Sprintf("; %d dropped", h.Dropped)
	}
	return msg
}

// EventLogHealth reports whether the controller's events reach the store:
// events waiting after failed writes, failures and drops since start.
func (c *Controller) EventLogHealth() EventLogHealth { return c.events.health() }

// add queues e, stamping its time. It never blocks.
func (l *eventLog) add(e api.Event) {
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	l.mu.Lock()
	l.queue = append(l.queue, e)
	if over := len(l.queue) - maxPendingEvents; over > 0 {
		l.queue = append(l.queue[:0:0], l.queue[over:]...)
		l.drop(over)
	}
	l.pending.Store(int64(len(l.queue)))
	l.mu.Unlock()
	l.kick()
}

func (l *eventLog) kick() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// record writes e (after anything queued) and returns the store's error:
// for events that record an operator's action, which must fail when its
// record cannot be written. On error e is not stored and not queued.
func (l *eventLog) record(e api.Event) error {
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.flushLocked(); err != nil {
		return fmt.Errorf("record event: earlier events cannot be stored: %w", err)
	}
	if err := l.write([]api.Event{e}); err != nil {
		l.failed(err)
		return fmt.Errorf("record event: %w", err)
	}
	l.lastErr.Store(nil)
	l.notify()
	return nil
}

// flushLocked writes the queue; wmu is held. Events that could not be
// written go back to the front of the queue, in order.
func (l *eventLog) flushLocked() error {
	l.mu.Lock()
	batch := l.queue
	l.queue = nil
	l.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	n, err := l.writePrefix(batch)
	if n > 0 {
		l.notify()
	}
	if err == nil {
		l.lastErr.Store(nil)
		l.mu.Lock()
		l.pending.Store(int64(len(l.queue)))
		l.mu.Unlock()
		return nil
	}
	l.mu.Lock()
	l.queue = append(batch[n:len(batch):len(batch)], l.queue...)
	if over := len(l.queue) - maxPendingEvents; over > 0 {
		l.queue = append(l.queue[:0:0], l.queue[over:]...)
		l.drop(over)
	}
	l.pending.Store(int64(len(l.queue)))
	l.mu.Unlock()
	l.failed(err)
	return err
}

// maxEventWrite bounds the events stored in one write (one transaction):
// a bring-up queues thousands at once, and one write of each cost a sync
// of the disk per event.
const maxEventWrite = 512

// writePrefix stores batch in order, up to maxEventWrite events per write
// (write stores all of its events or none), stopping at the first failure,
// and returns how many were stored.
func (l *eventLog) writePrefix(batch []api.Event) (int, error) {
	n := 0
	for n < len(batch) {
		end := min(n+maxEventWrite, len(batch))
		if err := l.write(batch[n:end]); err != nil {
			return n, err
		}
		n = end
	}
	return n, nil
}

// drop counts n events dropped, oldest first; the first drop is logged
// (the count stays in Health, Status and the metrics).
func (l *eventLog) drop(n int) {
	if l.dropped.Add(uint64(n)) == uint64(n) {
		l.log.Error("events dropped: the store has not been writable for too long; counting further drops", "dropped", n, "kept", maxPendingEvents)
	}
}

func (l *eventLog) failed(err error) {
	l.failures.Add(1)
	msg := err.Error()
	l.lastErr.Store(&msg)
	l.log.Error("events cannot be written to the store; kept and retried", "error", err, "pending", l.pending.Load())
}

// run writes queued events until close, retrying failed writes with
// backoff (eventRetryMin doubling to eventRetryMax); after close it makes
// one last attempt and returns, logging what could not be stored.
func (l *eventLog) run() {
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	var delay time.Duration // the last retry delay; 0 after a success
	waiting := false        // a retry is scheduled: new events wait for it
	for {
		select {
		case <-l.wake:
		case <-retry.C:
			waiting = false
		}
		l.mu.Lock()
		closed := l.closed
		l.mu.Unlock()
		if waiting && !closed {
			continue
		}
		l.wmu.Lock()
		err := l.flushLocked()
		l.wmu.Unlock()
		if closed {
			if err != nil {
				l.log.Error("events not stored at shutdown", "error", err, "events", l.pending.Load())
			}
			return
		}
		if err == nil {
			delay = 0
			continue
		}
		delay = min(max(2*delay, eventRetryMin), eventRetryMax)
		retry.Reset(delay)
		waiting = true
	}
}

// close makes run write what is queued and return.
func (l *eventLog) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.kick()
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
