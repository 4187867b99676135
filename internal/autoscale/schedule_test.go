package autoscale

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func mustCron(t *testing.T, spec, tz string) *Cron {
	t.Helper()
	c, err := ParseCron(spec, tz)
	if err != nil {
		t.Fatalf("ParseCron(%q, %q): %v", spec, tz, err)
	}
	return c
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestCronTimesAcrossDST(t *testing.T) {
	for _, c := range []struct {
		name, spec, tz string
		from, to       string
		want           []string // UTC
	}{
		{
			// 2026-03-08 02:00 EST does not exist: clocks jump to 03:00 EDT
			// at 07:00 UTC. The 02:30 run happens at the jump.
			"spring forward skipped time runs at the jump", "30 2 * * *", "America/New_York",
			"2026-03-07T00:00:00Z", "2026-03-10T00:00:00Z",
			[]string{"2026-03-07T07:30:00Z", "2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"},
		},
		{
			"spring forward every 30 minutes runs once at the jump", "*/30 * * * *", "America/New_York",
			"2026-03-08T06:00:00Z", "2026-03-08T07:30:00Z",
			[]string{"2026-03-08T06:30:00Z", "2026-03-08T07:00:00Z", "2026-03-08T07:30:00Z"},
		},
		{
			// 2026-11-01 01:30 happens twice (EDT, then EST): run once.
			"fall back repeated time runs once", "30 1 * * *", "America/New_York",
			"2026-10-31T00:00:00Z", "2026-11-03T00:00:00Z",
			[]string{"2026-10-31T05:30:00Z", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"},
		},
		{
			"weekday mornings keep local time across DST", "0 8 * * mon-fri", "Europe/Paris",
			"2026-03-26T00:00:00Z", "2026-03-31T00:00:00Z",
			[]string{"2026-03-26T07:00:00Z", "2026-03-27T07:00:00Z", "2026-03-30T06:00:00Z"},
		},
		{
			"zone in the expression", "CRON_TZ=Asia/Tokyo 0 9 * * *", "",
			"2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z",
			[]string{"2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"},
		},
		{
			"empty zone is UTC", "@daily", "",
			"2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z",
			[]string{"2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := mustCron(t, c.spec, c.tz).Times(utc(c.from), utc(c.to), 100)
			var gotS []string
			for _, g := range got {
				gotS = append(gotS, g.UTC().Format(time.RFC3339))
			}
			if strings.Join(gotS, " ") != strings.Join(c.want, " ") {
				t.Fatalf("Times = %v, want %v", gotS, c.want)
			}
		})
	}
}

func TestCronTimesLimit(t *testing.T) {
	got := mustCron(t, "* * * * *", "UTC").Times(utc("2026-01-01T00:00:00Z"), utc("2026-01-02T00:00:00Z"), 3)
	if len(got) != 3 || !got[2].Equal(utc("2026-01-01T00:03:00Z")) {
		t.Fatalf("Times with limit 3 = %v", got)
	}
}

func TestParseCronErrors(t *testing.T) {
	for _, c := range []struct{ spec, tz, want string }{
		{"", "", "empty cron expression"},
		{"0 8 * * *", "Mars/Olympus", `unknown time zone "Mars/Olympus"`},
		{"0 8 * * *", "Local", `time zone "Local" depends on the machine`},
		{"@every 5m", "", "@every is not supported"},
		{"0 0 30 2 *", "", "never fires"},
		{"CRON_TZ=UTC", "", "has a time zone but no schedule"},
		{"TZ=UTC", "", "has a time zone but no schedule"},
		{"CRON_TZ=UTC TZ=Europe/Paris 0 * * * *", "", "a time zone may only come first"},
		{"CRON_TZ=Asia/Tokyo 0 9 * * *", "Europe/Paris", "disagrees with time zone"},
		{"61 * * * *", "", "cron expression \"61 * * * *\""},
		{"0 8 * *", "", "expected exactly 5 fields"},
	} {
		if _, err := ParseCron(c.spec, c.tz); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseCron(%q, %q) = %v, want an error containing %q", c.spec, c.tz, err, c.want)
		}
	}
}

func TestTimetableDue(t *testing.T) {
	table, err := NewTimetable([]Schedule{
		{Name: "morning", Cron: "0 8 * * mon", TimeZone: "Europe/Paris", Min: ptr(4)}, // 2026-06-01 is a Monday
		{Cron: "*/15 * * * *", Desired: ptr(3)},
	})
	if err != nil {
		t.Fatal(err)
	}
	// One tick: nothing due, then the quarter.
	if got := table.Due(utc("2026-06-01T05:59:58Z"), utc("2026-06-01T05:59:59Z")); len(got) != 0 {
		t.Fatalf("Due = %+v, want none", got)
	}
	got := table.Due(utc("2026-06-01T05:59:59Z"), utc("2026-06-01T06:00:00Z"))
	if len(got) != 2 || got[0].Name != "morning" || *got[0].Min != 4 || got[1].Name != "*/15 * * * *" || *got[1].Desired != 3 {
		t.Fatalf("Due at 08:00 Paris = %+v", got)
	}
	// A long gap yields only the latest firing of each, in time order.
	got = table.Due(utc("2026-06-01T05:00:00Z"), utc("2026-06-02T04:50:00Z"))
	if len(got) != 2 || !got[0].At.Equal(utc("2026-06-01T06:00:00Z")) || !got[1].At.Equal(utc("2026-06-02T04:45:00Z")) {
		t.Fatalf("Due over a day = %+v", got)
	}
	// Older than MaxCatchUp is not replayed.
	if got := table.Due(utc("2026-06-01T05:00:00Z"), utc("2026-06-03T05:30:00Z")); len(got) != 1 || got[0].Min != nil {
		t.Fatalf("Due over two days = %+v, want only the quarter-hourly one", got)
	}
	if got := table.Due(utc("2026-06-02T00:00:00Z"), utc("2026-06-01T00:00:00Z")); got != nil {
		t.Fatalf("Due backwards = %+v", got)
	}
	var none *Timetable
	if got := none.Due(utc("2026-06-01T00:00:00Z"), utc("2026-06-02T00:00:00Z")); got != nil {
		t.Fatalf("nil Timetable Due = %+v", got)
	}
}

func TestNewTimetableProblems(t *testing.T) {
	_, err := NewTimetable([]Schedule{
		{Cron: "0 8 * * *", TimeZone: "Nowhere/Land", Min: ptr(1)},
		{Cron: "bad"},
		{Cron: "0 8 * * *", Min: ptr(5), Max: ptr(3), Desired: ptr(9)},
	})
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("err = %v, want Problems", err)
	}
	var paths []string
	for _, p := range ps {
		paths = append(paths, p.Path)
	}
	want := "schedules[0].time_zone schedules[1].cron schedules[1] schedules[2].max schedules[2].desired"
	if strings.Join(paths, " ") != want {
		t.Fatalf("paths = %v, want %s\n%v", paths, want, err)
	}
}
