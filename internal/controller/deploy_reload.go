package controller

import (
	"errors"
	"fmt"
	"strings"

	"github.com/shoal-dev/shoal/internal/config"
)

// ErrRestartRequired means a deploy's shoal.yaml changes settings that a
// running shoal up applies only when it starts; nothing was deployed.
var ErrRestartRequired = errors.New("restart shoal up to apply")

// restartOnlyChanges returns, one per setting, the changes from cur (the
// configuration shoal up runs with) to next (the configuration a deploy sent)
// that a deploy cannot apply: the health check and the group's bounds
// are read once when shoal up starts. A deploy applies run and deploy;
// group.desired is reported separately (desiredNote) because it never
// takes effect after the first start.
func restartOnlyChanges(cur, next *config.App) []string {
	var out []string
	diff := func(name string, a, b any) {
		if fmt.Sprint(a) != fmt.Sprint(b) {
			out = append(out, fmt.Sprintf("%s changed (%v -> %v)", name, a, b))
		}
	}
	h, nh := cur.Health, next.Health
	diff("health.path", h.Path, nh.Path)
	diff("health.host", h.Host, nh.Host)
	diff("health.interval", h.Interval.D(), nh.Interval.D())
	diff("health.timeout", h.Timeout.D(), nh.Timeout.D())
	diff("health.healthy_threshold", h.HealthyThreshold, nh.HealthyThreshold)
	diff("health.unhealthy_threshold", h.UnhealthyThreshold, nh.UnhealthyThreshold)
	diff("health.grace", h.Grace.D(), nh.Grace.D())
	diff("health.statuses", h.Statuses.String(), nh.Statuses.String())
	g, ng := cur.Group, next.Group
	diff("group.min", g.Min, ng.Min)
	diff("group.max", g.Max, ng.Max)
	diff("group.max_replacing", g.MaxReplacing, ng.MaxReplacing)
	return out
}

// checkReloadable returns an error wrapping ErrRestartRequired that lists
// every change of next that a deploy cannot apply, or nil.
func checkReloadable(cur, next *config.App) error {
	ch := restartOnlyChanges(cur, next)
	if len(ch) == 0 {
		return nil
	}
	return fmt.Errorf("%s: %w (or undo the change to deploy without it)", strings.Join(ch, "; "), ErrRestartRequired)
}

// desiredNote says, when group.desired changed in the file, that it does
// not change the running count; empty otherwise.
func desiredNote(cur, next *config.App) string {
	if cur.Group.Desired == next.Group.Desired {
		return ""
	}
	return fmt.Sprintf("note: group.desired changed (%d -> %d) but only sets the count of a first start; run shoal scale %d to change the running count",
		cur.Group.Desired, next.Group.Desired, next.Group.Desired)
}
