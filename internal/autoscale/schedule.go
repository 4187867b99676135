package autoscale

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// MaxCatchUp is how far back Due looks: a controller that was down for
// longer does not replay older scheduled actions.
const MaxCatchUp = 24 * time.Hour

// Schedule is a scheduled action: at the times of Cron, in TimeZone, set
// the group's Min, Max and/or desired count. Nil fields are left alone.
type Schedule struct {
	// Name identifies the schedule in events; empty means Cron.
	Name string
	// Cron is a five-field crontab expression (minute hour day-of-month
	// month day-of-week, such as "0 8 * * mon-fri") or one of @yearly,
	// @monthly, @weekly, @daily, @hourly. It may start with
	// "CRON_TZ=Europe/Paris " instead of setting TimeZone.
	Cron string
	// TimeZone is the IANA zone the expression's times are in, such as
	// "Europe/Paris". Empty means UTC, never the machine's local zone, so
	// that moving the controller does not move the schedule.
	TimeZone string
	// Min, Max and Desired are the values to set.
	Min, Max, Desired *int
}

// label is the schedule's name in actions and events.
func (s Schedule) label() string {
	if s.Name != "" {
		return s.Name
	}
	return s.Cron
}

// validate appends s's problems to ps, with field paths under prefix.
func (s Schedule) validate(prefix string, ps *Problems) {
	if _, err := ParseCron(s.Cron, s.TimeZone); err != nil {
		path := prefix + ".cron"
		if strings.Contains(err.Error(), "time zone") {
			path = prefix + ".time_zone"
		}
		ps.add(path, "%v", err)
	}
	if s.Min == nil && s.Max == nil && s.Desired == nil {
		ps.add(prefix, "a schedule must set at least one of min, max or desired")
	}
	if s.Min != nil && (*s.Min < 0 || *s.Min > maxCount) {
		ps.add(prefix+".min", "min must be within 0 and %d, got %d", maxCount, *s.Min)
	}
	if s.Max != nil && (*s.Max < 1 || *s.Max > maxCount) {
		ps.add(prefix+".max", "max must be within 1 and %d, got %d", maxCount, *s.Max)
	}
	if s.Desired != nil && (*s.Desired < 0 || *s.Desired > maxCount) {
		ps.add(prefix+".desired", "desired must be within 0 and %d, got %d", maxCount, *s.Desired)
	}
	if s.Min != nil && s.Max != nil && *s.Min > *s.Max {
		ps.add(prefix+".max", "max %d is below min %d", *s.Max, *s.Min)
	}
	if s.Desired != nil && s.Min != nil && *s.Desired < *s.Min {
		ps.add(prefix+".desired", "desired %d is below min %d", *s.Desired, *s.Min)
	}
	if s.Desired != nil && s.Max != nil && *s.Desired > *s.Max {
		ps.add(prefix+".desired", "desired %d is above max %d", *s.Desired, *s.Max)
	}
}

// Action is a Schedule that is due.
type Action struct {
	// Name is the schedule's Name, or its Cron when unnamed.
	Name string
	// At is when it was due.
	At time.Time
	// Min, Max and Desired are the schedule's; nil means unchanged.
	Min, Max, Desired *int
}

// Cron is a parsed cron expression in a time zone. It is immutable and
// safe for concurrent use.
type Cron struct {
	spec *cron.SpecSchedule
	loc  *time.Location
}

var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseCron parses a five-field cron expression or descriptor (see
// Schedule.Cron) in timeZone (empty means UTC). A "CRON_TZ=" or "TZ="
// prefix in spec names the zone too; it must then agree with timeZone.
// Expressions that never fire (such as "0 0 30 2 *") and @every are
// rejected. Errors about the zone mention "time zone".
func ParseCron(spec, timeZone string) (*Cron, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return nil, fmt.Errorf("empty cron expression")
	}
	if rest, ok := cutZonePrefix(spec); ok {
		zone, expr, found := strings.Cut(rest, " ")
		if !found {
			return nil, fmt.Errorf("cron expression %q has a time zone but no schedule", spec)
		}
		if timeZone != "" && timeZone != zone {
			return nil, fmt.Errorf("time zone %q in the cron expression disagrees with time zone %q", zone, timeZone)
		}
		timeZone, spec = zone, strings.TrimSpace(expr)
	}
	if strings.Contains(spec, "=") {
		return nil, fmt.Errorf("cron expression %q: a time zone may only come first, as CRON_TZ=Zone", spec)
	}
	if timeZone == "Local" {
		return nil, fmt.Errorf("time zone \"Local\" depends on the machine; name a zone such as \"Europe/Paris\" or UTC")
	}
	loc, err := time.LoadLocation(timeZone)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q", timeZone)
	}
	parsed, err := cronParser.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("cron expression %q: %w", spec, err)
	}
	ss, ok := parsed.(*cron.SpecSchedule)
	if !ok {
		return nil, fmt.Errorf("cron expression %q: @every is not supported; use a five-field expression", spec)
	}
	ss.Location = loc
	c := &Cron{spec: ss, loc: loc}
	ref := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	if c.spec.Next(ref).IsZero() {
		return nil, fmt.Errorf("cron expression %q never fires", spec)
	}
	return c, nil
}

func cutZonePrefix(spec string) (string, bool) {
	for _, p := range []string{"CRON_TZ=", "TZ="} {
		if rest, ok := strings.CutPrefix(spec, p); ok {
			return rest, true
		}
	}
	return "", false
}

// Location returns the zone the expression is in.
func (c *Cron) Location() *time.Location { return c.loc }

// Times returns the instants in (from, to] at which the expression fires,
// ascending, at most limit of them (the earliest). Daylight saving time is
// handled as Vixie cron does: a time skipped when clocks go forward fires
// once at the moment of the jump; a time repeated when clocks go back
// fires only the first time.
func (c *Cron) Times(from, to time.Time, limit int) []time.Time {
	var out []time.Time
	for t := c.spec.Next(from); !t.IsZero() && !t.After(to) && len(out) < limit; t = c.spec.Next(t) {
		if !c.repeated(t) {
			out = append(out, t)
		}
	}
	// Transitions where the clocks jump forward, in (from, to].
	_, end := from.In(c.loc).ZoneBounds()
	for range 1000 {
		if end.IsZero() || end.After(to) {
			break
		}
		if c.skippedAt(end) && !slices.ContainsFunc(out, end.Equal) {
			out = append(out, end)
		}
		_, end = end.ZoneBounds()
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

// repeated reports whether t's wall-clock time already occurred before,
// because the clocks went back less than the shift before t.
func (c *Cron) repeated(t time.Time) bool {
	t = t.In(c.loc)
	start, _ := t.ZoneBounds()
	if start.IsZero() {
		return false
	}
	_, prevOff := start.Add(-time.Nanosecond).Zone()
	_, off := t.Zone()
	shift := time.Duration(prevOff-off) * time.Second
	return shift > 0 && t.Sub(start) < shift
}

// skippedAt reports whether the expression would have fired at a
// wall-clock time that did not exist because the clocks jumped forward at
// the instant jump.
func (c *Cron) skippedAt(jump time.Time) bool {
	_, prevOff := jump.Add(-time.Nanosecond).In(c.loc).Zone()
	_, off := jump.In(c.loc).Zone()
	shift := time.Duration(off-prevOff) * time.Second
	if shift <= 0 {
		return false
	}
	// In the old offset, the skipped wall-clock times are the instants
	// [jump, jump+shift).
	old := *c.spec
	old.Location = time.FixedZone("", prevOff)
	n := old.Next(jump.Add(-time.Nanosecond))
	return !n.IsZero() && n.Before(jump.Add(shift))
}

// Timetable is a compiled set of Schedules. It is immutable and safe for
// concurrent use.
type Timetable struct {
	entries []Schedule
	crons   []*Cron
}

// NewTimetable parses every schedule; the error is Problems with paths
// "schedules[i]...".
func NewTimetable(ss []Schedule) (*Timetable, error) {
	var ps Problems
	t := &Timetable{entries: slices.Clone(ss), crons: make([]*Cron, len(ss))}
	for i, s := range ss {
		s.validate(fmt.Sprintf("schedules[%d]", i), &ps)
		if c, err := ParseCron(s.Cron, s.TimeZone); err == nil {
			t.crons[i] = c
		}
	}
	if len(ps) > 0 {
		return nil, ps
	}
	return t, nil
}

// Due returns, for each schedule that fired in (from, to], its latest
// firing, sorted by time (then schedule order). Only the latest matters
// because an action sets values rather than changing them. Firings more
// than MaxCatchUp before to are ignored. The controller calls Due on each
// tick with the previous tick's time as from. A nil Timetable has no
// schedules.
func (t *Timetable) Due(from, to time.Time) []Action {
	if t == nil || !to.After(from) {
		return nil
	}
	if to.Sub(from) > MaxCatchUp {
		from = to.Add(-MaxCatchUp)
	}
	var out []Action
	for i, c := range t.crons {
		times := c.Times(from, to, 2*24*60+2) // a day of minutes, with DST
		if len(times) == 0 {
			continue
		}
		s := t.entries[i]
		out = append(out, Action{Name: s.label(), At: times[len(times)-1], Min: s.Min, Max: s.Max, Desired: s.Desired})
	}
	slices.SortStableFunc(out, func(a, b Action) int { return a.At.Compare(b.At) })
	return out
}
