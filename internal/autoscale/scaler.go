package autoscale

import (
	"fmt"
	"strings"
	"time"
)

// Direction is the way a Decision moves the group.
type Direction uint8

// The directions.
const (
	Hold Direction = iota // no change
	Out                   // more instances
	In                    // fewer instances
)

// String returns "hold", "out" or "in".
func (d Direction) String() string {
	switch d {
	case Hold:
		return "hold"
	case Out:
		return "out"
	case In:
		return "in"
	}
	return fmt.Sprintf("direction(%d)", uint8(d))
}

// State is where a Scaler is in its state machine (see the package doc)
// after a Decision.
type State uint8

// The states.
const (
	Steady      State = iota // no change pending
	CoolingOut               // within CooldownOut of a scale-out
	Stabilizing              // all policies want fewer; waiting for the stabilization window
	CoolingIn                // within CooldownIn of a scale-in
	Paused                   // Pause was called
)

// String returns the state's name: "steady", "cooling_out",
// "stabilizing", "cooling_in" or "paused".
func (s State) String() string {
	switch s {
	case Steady:
		return "steady"
	case CoolingOut:
		return "cooling_out"
	case Stabilizing:
		return "stabilizing"
	case CoolingIn:
		return "cooling_in"
	case Paused:
		return "paused"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Decision is the outcome of one evaluation. It is an event: Reason or
// Held carries the inputs in words.
type Decision struct {
	Time    time.Time
	Current int
	// Desired is the count the group should have; within [Min, Max].
	Desired   int
	Direction Direction
	State     State
	// Reason explains a change, such as
	// "p95 412ms > target 300ms over 10s; desired 3 -> 5". Empty on Hold.
	Reason string
	// Held explains why there is no change, such as "within tolerance",
	// "scale-in stabilization: 3m12s left", "cooldown after scale-out:
	// 4s left" or "at max 8". Empty when Desired != Current.
	Held string
	// PerPolicy has one entry per policy, in Config order.
	PerPolicy []PolicyValue
}

// rec is one recommendation kept for scale-in stabilization.
type rec struct {
	at time.Time
	n  int
}

// Scaler is the auto-scaling state machine of one group. It is not safe
// for concurrent use: one goroutine (the controller's loop for the group)
// calls it, and copies a Decision to share it. Its methods never block and
// do no I/O. The zero Scaler is not usable; use NewScaler.
//
// Each Decision is assumed to be applied: the next call's current should
// be the Desired returned (or the count the operator set since).
type Scaler struct {
	cfg      Config
	min, max int
	paused   bool
	table    *Timetable

	// recs is a monotonic queue of the recommendations of the last
	// Stabilization: times ascending, counts strictly descending, so the
	// front is the highest and each entry is the latest with its count or
	// more.
	recs    []rec
	since   time.Time // start of the recommendation memory; zero before the first Decide
	lastOut time.Time
	lastIn  time.Time
}

// NewScaler returns a Scaler for cfg, which it validates (the error is
// Problems). It starts unpaused with cfg's Min and Max.
func NewScaler(cfg Config) (*Scaler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t, err := NewTimetable(cfg.Schedules)
	if err != nil {
		return nil, err
	}
	cfg.Policies = append([]Policy(nil), cfg.Policies...)
	return &Scaler{cfg: cfg, min: cfg.Min, max: cfg.Max, table: t}, nil
}

// Config returns the Config the Scaler was made with; the caller must not
// modify its slices.
func (s *Scaler) Config() Config { return s.cfg }

// Limits returns the current Min and Max, which scheduled actions change.
func (s *Scaler) Limits() (lo, hi int) { return s.min, s.max }

// SetLimits sets Min and Max (from a scheduled action or a reload). It
// returns an error and changes nothing unless 0 <= lo <= hi and hi >= 1.
// The next Decide brings the group within them.
func (s *Scaler) SetLimits(lo, hi int) error {
	if lo < 0 || hi < 1 || lo > hi || hi > maxCount {
		return fmt.Errorf("set limits: need 0 <= min <= max, 1 <= max <= %d; got min %d, max %d", maxCount, lo, hi)
	}
	s.min, s.max = lo, hi
	return nil
}

// Pause stops automatic changes: Decide still reports every policy's value
// but holds (within Min and Max). Pausing twice is harmless.
func (s *Scaler) Pause() { s.paused = true }

// Resume undoes Pause. The recommendations seen while paused still count
// for stabilization.
func (s *Scaler) Resume() { s.paused = false }

// Paused reports whether the Scaler is paused.
func (s *Scaler) Paused() bool { return s.paused }

// SetDesired records a manual count (shoal scale N) or a scheduled one at
// now and returns it clamped to [Min, Max]. The stabilization memory
// starts over, so the group is not scaled in for a full Stabilization
// after it; policies that want more still scale out at once.
func (s *Scaler) SetDesired(now time.Time, n int) int {
	s.recs = s.recs[:0]
	s.since = now
	return s.clamp(n)
}

// ApplyAction applies a scheduled action at now to a group of current
// instances and returns the new desired count. Min and Max change first;
// then Desired, if the action sets it, as with SetDesired; else current
// is only brought within the new bounds. An action that would leave Min
// above Max changes nothing and returns an error.
func (s *Scaler) ApplyAction(now time.Time, a Action, current int) (int, error) {
	lo, hi := s.min, s.max
	if a.Min != nil {
		lo = *a.Min
	}
	if a.Max != nil {
		hi = *a.Max
	}
	if err := s.SetLimits(lo, hi); err != nil {
		return current, fmt.Errorf("apply schedule %q: %w", a.Name, err)
	}
	if a.Desired != nil {
		return s.SetDesired(now, *a.Desired), nil
	}
	return s.clamp(current), nil
}

// Due returns the scheduled actions due in (from, to]; see Timetable.Due.
func (s *Scaler) Due(from, to time.Time) []Action { return s.table.Due(from, to) }

func (s *Scaler) clamp(n int) int { return min(max(n, s.min), s.max) }

// remember adds the recommendation n at now and forgets those that left
// the stabilization window (now-Stabilization, now].
func (s *Scaler) remember(now time.Time, n int) {
	if s.since.IsZero() {
		s.since = now
	}
	for len(s.recs) > 0 && s.recs[len(s.recs)-1].n <= n {
		s.recs = s.recs[:len(s.recs)-1]
	}
	s.recs = append(s.recs, rec{now, n})
	cut := now.Add(-s.cfg.Stabilization)
	drop := 0
	for drop < len(s.recs)-1 && !s.recs[drop].at.After(cut) {
		drop++
	}
	s.recs = append(s.recs[:0], s.recs[drop:]...)
}

// stabilized returns the highest recommendation of the window and, if
// the window does not yet allow a scale-in from current, how long until
// it may: the memory must span the whole window, and the latest
// recommendation not below current must have left it.
func (s *Scaler) stabilized(now time.Time, current int) (int, time.Duration) {
	left := s.since.Add(s.cfg.Stabilization).Sub(now)
	for _, r := range s.recs {
		if l := r.at.Add(s.cfg.Stabilization).Sub(now); r.n >= current && l > 0 {
			left = max(left, l)
		}
	}
	if left > 0 {
		return current, left
	}
	return s.recs[0].n, 0
}

// Decide evaluates every policy over w at now for a group whose desired
// count is current, and returns the Decision. It records the
// recommendation and, when the Decision changes the count, the time for
// that direction's cooldown. Calls must have non-decreasing now.
//
// Without data (no sample in the window, no warmed-up instance, no CPU or
// latency reported) a policy proposes no change, which blocks a scale-in:
// missing metrics never shrink a group. A group at zero instances has no
// metrics, so it stays at zero until a manual or scheduled change; scaling
// from zero on the first request is not part of this strategy.
func (s *Scaler) Decide(now time.Time, current int, w *Window) Decision {
	d := Decision{Time: now, Current: current, Desired: current}
	d.PerPolicy = make([]PolicyValue, len(s.cfg.Policies))
	for i, p := range s.cfg.Policies {
		d.PerPolicy[i] = s.cfg.evaluate(p, w, now, current)
	}
	want, dir, why := combine(d.PerPolicy, current, w.Size())
	s.remember(now, min(max(want, 0), maxCount))
	over := fmt.Sprintf(" over %s", w.Size())
	for _, pv := range d.PerPolicy {
		if pv.Recent {
			over = "" // the notes say their spans
		}
	}

	switch {
	case current < s.min || current > s.max:
		d.Desired = s.clamp(current)
		bound := fmt.Sprintf("below min %d", s.min)
		if current > s.max {
			bound = fmt.Sprintf("above max %d", s.max)
		}
		d.Reason = fmt.Sprintf("%s; desired %d -> %d", bound, current, d.Desired)
	case s.paused:
		d.Held = "paused"
		if dir != Hold {
			d.Held = fmt.Sprintf("paused (would scale %s: %s)", dir, why)
		}
	case dir == Out:
		d.Desired, d.Reason, d.Held = s.scaleOut(now, current, want, why+over, s.paced(d.PerPolicy, w, now, current))
	case dir == In:
		d.Desired, d.Reason, d.Held = s.scaleIn(now, current, why+over)
	default:
		d.Held = why
	}

	switch {
	case d.Desired > current:
		d.Direction = Out
	case d.Desired < current:
		d.Direction = In
	}
	d.State = s.state(now, dir, d.Held)
	return d
}

// paced returns "" when a scale-out from current may skip the rest of
// CooldownOut, else why not: every policy that wants more is target
// tracking, and every one of the current desired instances is in service
// in the latest sample. (A step policy adds its adjustment to whatever is
// there, on a value that lags the new capacity, so it waits the whole
// cooldown; see Config.CooldownOut.)
func (s *Scaler) paced(pvs []PolicyValue, w *Window, now time.Time, current int) string {
	for _, pv := range pvs {
		if pv.Wants > current && pv.Kind != TargetTracking {
			return "step policy"
		}
	}
	_, last := w.span(now, w.size)
	if last < 0 {
		return "no sample"
	}
	up := 0
	for _, in := range w.samples[last].Instances {
		if !in.InService.IsZero() {
			up++
		}
	}
	if up < current {
		return fmt.Sprintf("%d of %d in service", up, current)
	}
	return ""
}

// scaleOut returns the bounded scale-out from current toward want; wait
// is why the cooldown after the previous scale-out still applies, or ""
// when that scale-out is in service (see paced).
func (s *Scaler) scaleOut(now time.Time, current, want int, why, wait string) (desired int, reason, held string) {
	if current >= s.max {
		return current, "", fmt.Sprintf("at max %d (%s wants %d)", s.max, why, want)
	}
	if !s.lastOut.IsZero() && wait != "" {
		if left := s.lastOut.Add(s.cfg.CooldownOut).Sub(now); left > 0 {
			return current, "", fmt.Sprintf("cooldown after scale-out: %s left (%s wants %d; %s)", round(left), why, want, wait)
		}
	}
	limit := max(current+s.cfg.MaxStepUp, ceilCount(float64(current)*s.cfg.MaxFactorUp))
	desired = min(want, limit, s.max)
	reason = fmt.Sprintf("%s; desired %d -> %d", why, current, desired)
	switch {
	case desired == s.max && want > s.max:
		reason += fmt.Sprintf(" (wants %d, max %d)", want, s.max)
	case desired < want:
		reason += fmt.Sprintf(" (wants %d, step limit max(+%d, x%g))", want, s.cfg.MaxStepUp, s.cfg.MaxFactorUp)
	}
	s.lastOut = now
	return desired, reason, ""
}

// scaleIn returns the stabilized, bounded scale-in from current.
func (s *Scaler) scaleIn(now time.Time, current int, why string) (desired int, reason, held string) {
	if current <= s.min {
		return current, "", fmt.Sprintf("at min %d", s.min)
	}
	stable, left := s.stabilized(now, current)
	if left > 0 {
		return current, "", fmt.Sprintf("scale-in stabilization: %s left", round(left))
	}
	if !s.lastIn.IsZero() {
		if left := s.lastIn.Add(s.cfg.CooldownIn).Sub(now); left > 0 {
			return current, "", fmt.Sprintf("cooldown after scale-in: %s left", round(left))
		}
	}
	desired = max(stable, current-s.cfg.MaxStepDown, s.min)
	if s.cfg.Stabilization > 0 {
		why += fmt.Sprintf(" for %s", s.cfg.Stabilization)
	}
	reason = fmt.Sprintf("%s; desired %d -> %d", why, current, desired)
	if desired > stable && desired == current-s.cfg.MaxStepDown {
		reason += fmt.Sprintf(" (wants %d, step limit -%d)", stable, s.cfg.MaxStepDown)
	}
	s.lastIn = now
	return desired, reason, ""
}

// state names where the machine is after a decision at now.
func (s *Scaler) state(now time.Time, dir Direction, held string) State {
	switch {
	case s.paused:
		return Paused
	case !s.lastOut.IsZero() && now.Before(s.lastOut.Add(s.cfg.CooldownOut)):
		return CoolingOut
	case dir == In && strings.HasPrefix(held, "scale-in stabilization"):
		return Stabilizing
	case !s.lastIn.IsZero() && now.Before(s.lastIn.Add(s.cfg.CooldownIn)):
		return CoolingIn
	}
	return Steady
}

// combine merges the policies' proposals: out to the largest if any wants
// more; in to the largest if all have data and want fewer; else hold. It
// returns the recommendation, the direction and the explanation; when
// some notes come from the recent OutWindow look (which say their span),
// the others get " over <window>" (see spanNotes).
func combine(pvs []PolicyValue, current int, window time.Duration) (int, Direction, string) {
	if len(pvs) == 0 {
		return current, Hold, "no policies"
	}
	best := pvs[0].Wants
	for _, pv := range pvs[1:] {
		best = max(best, pv.Wants)
	}
	var notes []string
	if best > current {
		var out []PolicyValue
		for _, pv := range pvs {
			if pv.Wants > current {
				out = append(out, pv)
			}
		}
		return best, Out, spanNotes(out, window)
	}
	if best < current {
		return best, In, spanNotes(pvs, window)
	}
	// Hold: say what holds, leaving out policies that would allow a
	// scale-in when others do not.
	for _, pv := range pvs {
		if pv.Wants >= current {
			notes = append(notes, qualify(pv))
		}
	}
	return current, Hold, strings.Join(notes, ", ")
}

// spanNotes joins the notes of pvs. When some are from the recent look
// (whose notes say "in each of the last 2s"), each other note gets
// " over <window>"; else the caller adds one at the end.
func spanNotes(pvs []PolicyValue, window time.Duration) string {
	anyRecent := false
	for _, pv := range pvs {
		anyRecent = anyRecent || pv.Recent
	}
	notes := make([]string, len(pvs))
	for i, pv := range pvs {
		notes[i] = pv.Note
		if anyRecent && !pv.Recent {
			notes[i] += fmt.Sprintf(" over %s", window)
		}
	}
	return strings.Join(notes, ", ")
}

// qualify prefixes a holding policy's note with its name when the note
// does not already start with the metric.
func qualify(pv PolicyValue) string {
	if strings.HasPrefix(pv.Note, pv.Metric.short()+" ") && pv.Name == pv.Metric.String() {
		return pv.Note
	}
	return pv.Name + ": " + pv.Note
}
