package controller

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/testenv"
)

func TestCrashMessagePicksTheLineThatSaysWhy(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lines []string
		want  string
	}{
		{"node", []string{"node:internal/modules/cjs/loader:1228", "  throw err;", "  ^", "",
			"Error: Cannot find module '/srv/app/index.js'", "    at Module._resolveFilename (node:internal/modules/cjs/loader:1225:15)",
			"  code: 'MODULE_NOT_FOUND',", "}", "", "Node.js v22.0.0"}, "Error: Cannot find module '/srv/app/index.js'"},
		{"go panic", []string{"panic: runtime error: index out of range [3] with length 0", "", "goroutine 1 [running]:",
			"main.main()", "\t/src/main.go:9 +0x1d", "exit status 2"}, "panic: runtime error: index out of range [3] with length 0"},
		{"shell", []string{"sh: 1: nodee: not found"}, "sh: 1: nodee: not found"},
		{"no error word", []string{"starting", "bye", ""}, "bye"},
		{"nothing", nil, ""},
	} {
		if got := crashMessage(tc.lines); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestCrashInStatusAndEvents: a release that exits at once shows its last
// crash in Status and the reason in its failed and backoff events.
func TestCrashInStatusAndEvents(t *testing.T) {
	dir := t.TempDir()
	cfg := writeApp(t, dir, "crash", 1, 1)
	h := start(t, dir, cfg)
	st := h.waitFor("crash in status", func(st api.Status) error {
		if st.Crash == nil || st.Crash.InARow < 2 {
			return fmt.Errorf("crash = %+v", st.Crash)
		}
		return nil
	})
	if cr := st.Crash; cr.Exit != "exit 3" || cr.Release != 1 || cr.Instance == "" || cr.At.IsZero() {
		t.Errorf("crash = %+v", cr)
	}
	err := testenv.WaitFor(testenv.Context(t, 30*time.Second), func() error {
		evs, err := h.c.Events(0, 1000)
		if err != nil {
			return err
		}
		var failed, backoff bool
		for _, e := range evs {
			failed = failed || (e.State == "failed" && strings.HasPrefix(e.Reason, "process exited with status 3 after "))
			backoff = backoff || (e.Type == "backoff" && strings.Contains(e.Reason, "; last: exit 3 after "))
		}
		if !failed || !backoff {
			return fmt.Errorf("failed %v, backoff %v in %+v", failed, backoff, evs)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
