package reconcile

import "time"

// Backoff defaults.
const (
	// BaseDelay is the delay after the second failure in a row; it doubles
	// with each further failure. The first failure is replaced at once, so a
	// single crash costs no time.
	BaseDelay = 2 * time.Second
	// MaxDelay caps the delay between launches of a crash-looping release.
	MaxDelay = 60 * time.Second
	// StableUptime is how long an instance must have lived for its end not
	// to count as a crash of its release.
	StableUptime = 10 * time.Second
)

// Backoff is the crash-loop state of one release: how many instances of it
// in a row ended (exited or failed their checks) before becoming stable,
// and when the last one did. The zero value means no failures. It is a
// value: methods return a new Backoff.
type Backoff struct {
	Failures    int
	LastFailure time.Time
}

// Delay is the wait before the next launch after b.Failures failures in a
// row: 0 after none or one, then BaseDelay, 2*BaseDelay ... capped at
// MaxDelay.
func (b Backoff) Delay() time.Duration {
	if b.Failures <= 1 {
		return 0
	}
	d := BaseDelay
	for i := 2; i < b.Failures; i++ {
		d *= 2
		if d >= MaxDelay {
			return MaxDelay
		}
	}
	return d
}

// NextLaunch is the earliest time a new instance of the release may be
// launched; the zero time when there is no wait.
func (b Backoff) NextLaunch() time.Time {
	d := b.Delay()
	if d == 0 {
		return time.Time{}
	}
	return b.LastFailure.Add(d)
}

// Ended records that an instance of the release ended at now after it was
// launched at started. reachedService says whether it was ever in service.
// An instance that was in service for at least StableUptime resets the
// count; any other end is one more failure in a row.
func (b Backoff) Ended(now, started time.Time, reachedService bool) Backoff {
	if reachedService && now.Sub(started) >= StableUptime {
		return Backoff{}
	}
	return Backoff{Failures: b.Failures + 1, LastFailure: now}
}
