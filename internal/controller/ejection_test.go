package controller

import (
	"fmt"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/pool"
)

// TestPassingCheckEndsEjection: an instance in service that the balancer
// ejected passively (here: 5xx answers) comes back at its next passing
// health check instead of sitting out its whole ejection.
func TestPassingCheckEndsEjection(t *testing.T) {
	dir := t.TempDir()
	cfg := writeApp(t, dir, "serve", 1, 1)
	h := startWithPool(t, dir, cfg, pool.Options{Name: "web", DrainTimeout: time.Second,
		Outlier: pool.Outlier{ConsecutiveFailures: 1, BaseEjection: time.Hour, MaxEjection: time.Hour, MaxEjectedPercent: 100}})
	h.waitFor("one in service", inService(1))

	targets := h.pool.Targets()
	if len(targets) != 1 {
		t.Fatalf("pool targets %v, want 1", poolAddrs(h.pool))
	}
	tg := targets[0]
	tg.Begin()
	tg.End(pool.Outcome{Status: 502})
	if st := tg.State(); st != pool.StateEjected {
		t.Fatalf("after a 502 the target is %s, want ejected", st)
	}
	// The health interval is 100ms; the hour-long ejection must end at the
	// next passing check.
	h.waitFor("the ejection ended by a health check", func(api.Status) error {
		if st := tg.State(); st != pool.StateHealthy {
			return fmt.Errorf("target %s, want healthy", st)
		}
		return nil
	})
}
