package controller

import (
	"fmt"
	"log/slog"
	"strings"
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

// eventLog writes events to the store, in order, and with them the
// controller's records of outcomes (a release's status, a rollout's end),
// in one of three ways:
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
//     operator does goes unrecorded. Queued entries are written first, so
//     sequence numbers keep the order of the calls.
//   - apply makes a change of stored state that records what happened
//     (release v2 failed, the outcome of a rollout) synchronously, after
//     the queued entries. When the store refuses it, it is not lost: it
//     joins the queue, in order with the events, and is retried with them
//     until the store takes it; meanwhile it is named in Status's problem
//     line and counted in shoal_state_writes_pending. Such writes are
//     never dropped (there are a few per rollout, not thousands).
//
// Writers are serialised by wmu, which is held only around store writes
// (it guards nothing else); mu guards the queue and is never held during
// I/O.
type eventLog struct {
	write func([]api.Event) error // stores events, in order: all of them, or none and an error
	log   *slog.Logger
	now   func() time.Time

	wmu sync.Mutex // serialises store writes, so entries are stored in order

	mu     sync.Mutex
	queue  []entry
	writes int // entries of queue that are state writes
	closed bool
	wake   chan struct{}
	subs   map[chan struct{}]struct{}

	failures atomic.Uint64 // failed store writes
	dropped  atomic.Uint64 // events dropped beyond maxPendingEvents
	pending  atomic.Int64  // events queued, not yet stored
	pendingW atomic.Int64  // state writes queued, not yet stored
	lastErr  atomic.Pointer[string]
	reg      *prometheus.Registry
}

// entry is one queued write: an event, or a state write when set is
// non-nil.
type entry struct {
	ev  api.Event
	set *stateWrite
}

// stateWrite is a change of stored state made through eventLog.apply.
type stateWrite struct {
	what string       // what it records, for logs and Status: "release v2 failed"
	do   func() error // idempotent: run again after an error
}

func newEventLog(write func([]api.Event) error, log *slog.Logger, now func() time.Time) *eventLog {
	l := &eventLog{write: write, log: log, now: now, wake: make(chan struct{}, 1), subs: map[chan struct{}]struct{}{},
		reg: prometheus.NewRegistry()}
	l.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "shoal_event_write_errors_total",
			Help: "Failed writes of events and state changes to the store (a full or failing disk); they are kept and retried.",
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

// withStateWrites exports shoal_state_writes_pending, for the log of a
// controller (the one that calls apply), and returns l.
func (l *eventLog) withStateWrites() *eventLog {
	l.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "shoal_state_writes_pending",
		Help: "Changes of stored state (a release's status, a rollout's outcome) that the store refused, waiting in order with the events to be retried.",
	}, func() float64 { return float64(l.pendingW.Load()) }))
	return l
}

// EventLogHealth says whether events and the controller's records of
// outcomes reach the store.
type EventLogHealth struct {
	// Pending events wait for a store write that failed; they are retried.
	Pending int
	// PendingWrites name the changes of stored state (a release's status,
	// a rollout's outcome) that wait, in order, to be retried; the store
	// still holds the state from before them.
	PendingWrites []string
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
	l.mu.Lock()
	if l.writes > 0 {
		for _, e := range l.queue {
			if e.set != nil {
				h.PendingWrites = append(h.PendingWrites, e.set.what)
			}
		}
	}
	l.mu.Unlock()
	return h
}

// problem describes, for Status, events and state changes that wait after
// a failed write; "" when everything is stored.
func (l *eventLog) problem() string {
	h := l.health()
	if h.LastError == "" && h.Dropped == 0 && len(h.PendingWrites) == 0 {
		return ""
	}
	what := fmt.Sprintf("%d events", h.Pending)
	if len(h.PendingWrites) > 0 {
		what = strings.Join(h.PendingWrites, ", ") + " and " + what
	}
	msg := what + " not yet stored (retrying)"
	if h.LastError != "" {
		msg += ": " + h.LastError
	}
	if h.Dropped > 0 {
		msg += fmt.Sprintf("; %d dropped", h.Dropped)
	}
	return msg
}

// EventLogHealth reports whether the controller's events and records of
// outcomes reach the store: what waits after failed writes, failures and
// drops since start.
func (c *Controller) EventLogHealth() EventLogHealth { return c.events.health() }

// add queues e, stamping its time. It never blocks.
func (l *eventLog) add(e api.Event) {
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	l.mu.Lock()
	l.queue = append(l.queue, entry{ev: e})
	l.trimLocked()
	l.mu.Unlock()
	l.kick()
}

// trimLocked drops the oldest queued events beyond maxPendingEvents
// (state writes are kept) and updates the gauges; mu is held.
func (l *eventLog) trimLocked() {
	if over := len(l.queue) - l.writes - maxPendingEvents; over > 0 {
		kept := make([]entry, 0, len(l.queue)-over)
		n := 0
		for _, e := range l.queue {
			if e.set == nil && n < over {
				n++
				continue
			}
			kept = append(kept, e)
		}
		l.queue = kept
		l.drop(over)
	}
	l.pending.Store(int64(len(l.queue) - l.writes))
	l.pendingW.Store(int64(l.writes))
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

// apply runs do, a change of stored state that records an outcome (what
// names it: "release v2 failed"), after the queued entries, and returns
// nil once the store took it. When the store refuses it, or an entry
// queued before it, do is queued in its place and retried with the events
// until it succeeds, and the error is returned for the caller to log; the
// caller goes on as if it were stored. do must be idempotent and read what
// it needs from the store when it runs: it may run again, and later.
func (l *eventLog) apply(what string, do func() error) error {
	w := &stateWrite{what: what, do: do}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.flushLocked(); err != nil {
		l.mu.Lock()
		l.queue = append(l.queue, entry{set: w})
		l.writes++
		l.trimLocked()
		l.mu.Unlock()
		l.kick()
		return fmt.Errorf("%s: kept and retried: %w", what, err)
	}
	if err := do(); err != nil {
		// Entries queued meanwhile came after this call: it goes first.
		l.mu.Lock()
		l.queue = append([]entry{{set: w}}, l.queue...)
		l.writes++
		l.trimLocked()
		l.mu.Unlock()
		l.failed(err)
		l.kick()
		return fmt.Errorf("%s: kept and retried: %w", what, err)
	}
	return nil
}

// sync writes what is queued and returns the store's error if anything
// is still waiting; for a change that must not overtake the records
// before it (a new release while the outcome of the last rollout waits).
func (l *eventLog) sync() error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	return l.flushLocked()
}

// flushLocked writes the queue; wmu is held. Entries that could not be
// written go back to the front of the queue, in order.
func (l *eventLog) flushLocked() error {
	l.mu.Lock()
	batch := l.queue
	l.queue = nil
	writes := l.writes
	l.writes = 0
	l.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	n, events, err := l.writePrefix(batch)
	if events > 0 {
		l.notify()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		l.lastErr.Store(nil)
		l.trimLocked()
		return nil
	}
	for _, e := range batch[:n] {
		if e.set != nil {
			writes--
		}
	}
	l.queue = append(batch[n:len(batch):len(batch)], l.queue...)
	l.writes += writes
	l.trimLocked()
	l.failedLocked(err)
	return err
}

// maxEventWrite bounds the events stored in one write (one transaction):
// a bring-up queues thousands at once, and one write of each cost a sync
// of the disk per event.
const maxEventWrite = 512

// writePrefix stores batch in order, stopping at the first failure: each
// run of consecutive events in writes of up to maxEventWrite (a write
// stores all of its events or none), each state write on its own. It
// returns how many entries, and of them events, were stored.
func (l *eventLog) writePrefix(batch []entry) (n, events int, err error) {
	for n < len(batch) {
		if s := batch[n].set; s != nil {
			if err := s.do(); err != nil {
				return n, events, err
			}
			n++
			continue
		}
		end := n
		for end < len(batch) && batch[end].set == nil && end-n < maxEventWrite {
			end++
		}
		evs := make([]api.Event, 0, end-n)
		for _, e := range batch[n:end] {
			evs = append(evs, e.ev)
		}
		if err := l.write(evs); err != nil {
			return n, events, err
		}
		events += end - n
		n = end
	}
	return n, events, nil
}

// drop counts n events dropped, oldest first; the first drop is logged
// (the count stays in Health, Status and the metrics).
func (l *eventLog) drop(n int) {
	if l.dropped.Add(uint64(n)) == uint64(n) {
		l.log.Error("events dropped: the store has not been writable for too long; counting further drops", "dropped", n, "kept", maxPendingEvents)
	}
}

func (l *eventLog) failed(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failedLocked(err)
}

// failedLocked counts and logs a failed write; mu is held (for the
// names of the state writes that wait).
func (l *eventLog) failedLocked(err error) {
	l.failures.Add(1)
	msg := err.Error()
	l.lastErr.Store(&msg)
	var waiting []string
	for _, e := range l.queue {
		if e.set != nil {
			waiting = append(waiting, e.set.what)
		}
	}
	l.log.Error("events cannot be written to the store; kept and retried", "error", err,
		"pending", l.pending.Load(), "waiting", strings.Join(waiting, ", "))
}

// run writes queued entries until close, retrying failed writes with
// backoff (eventRetryMin doubling to eventRetryMax); after close it makes
// one last attempt and returns, logging what could not be stored.
func (l *eventLog) run() {
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	var delay time.Duration // the last retry delay; 0 after a success
	waiting := false        // a retry is scheduled: new entries wait for it
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
				h := l.health()
				l.log.Error("events and state changes not stored at shutdown", "error", err, "events", h.Pending,
					"waiting", strings.Join(h.PendingWrites, ", "))
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

// EventWriter is the controller's event log for writers of events that
// belong to no controller (`shoal server`'s fleet events): Add queues an
// event without blocking, Run's goroutine writes the queue in order, and
// a write the store refuses keeps the events queued and retried with
// backoff, counted in the same metrics as a controller's (bounded at
// 10000 waiting; drops beyond it counted and logged, never silent).
type EventWriter struct{ l *eventLog }

// NewEventWriter returns an EventWriter that stores each event with
// write, in order. log receives the store's failures (nil discards).
func NewEventWriter(write func(api.Event) error, log *slog.Logger) *EventWriter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &EventWriter{l: newEventLog(func(evs []api.Event) error {
		for _, e := range evs {
			if err := write(e); err != nil {
				return err
			}
		}
		return nil
	}, log, time.Now)}
}

// Add queues e, stamping its time. It never blocks.
func (w *EventWriter) Add(e api.Event) { w.l.add(e) }

// Run writes queued events until Close, then makes one last attempt and
// returns. Call it once.
func (w *EventWriter) Run() { w.l.run() }

// Close makes Run write what is queued and return.
func (w *EventWriter) Close() { w.l.close() }

// Health reports whether the events reach the store.
func (w *EventWriter) Health() EventLogHealth { return w.l.health() }

// Metrics are shoal_event_write_errors_total, shoal_events_pending and
// shoal_events_dropped_total of this writer.
func (w *EventWriter) Metrics() prometheus.Gatherer { return w.l.reg }
