package controller

import (
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/internal/config"
)

// TestRestartOnlyChangesHealthHost: health.host is read once at start,
// like the rest of health, so a deploy that changes it is refused with
// the change named instead of being ignored.
func TestRestartOnlyChangesHealthHost(t *testing.T) {
	cur, next := &config.App{}, &config.App{}
	cur.Health.Host, next.Health.Host = "a.example.com", "b.example.com"
	ch := restartOnlyChanges(cur, next)
	if len(ch) != 1 || ch[0] != "health.host changed (a.example.com -> b.example.com)" {
		t.Fatalf("changes = %q", ch)
	}
	if err := checkReloadable(cur, next); err == nil || !strings.Contains(err.Error(), "health.host changed") {
		t.Fatalf("checkReloadable = %v", err)
	}
}
