package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/client"
)

// A deploy streams its progress every 250 ms; a CI log must get one line
// per change of the rollout, not one per tick of its clock.
func TestProgressOneLinePerChangeWhenNotATerminal(t *testing.T) {
	var out bytes.Buffer
	p := newProgressPrinter(&out)
	pr := func(phase string, done int, elapsed time.Duration, state string) client.DeployLine {
		return client.DeployLine{Progress: &client.RolloutProgress{Target: 2, Phase: phase, Done: done, Total: 2,
			Elapsed: elapsed, Instances: []client.RolloutInstance{{ID: "app-v2-abc1", Release: 2, State: state}}}}
	}
	var elapsed time.Duration
	tick := func(phase string, done int, state string, n int) {
		for range n {
			elapsed += 250 * time.Millisecond
			p.line(pr(phase, done, elapsed, state))
		}
	}
	tick("surging", 0, "starting", 40)
	p.line(client.DeployLine{Log: "build: ok"})
	tick("surging", 0, "starting", 10)
	tick("waiting_healthy", 0, "in_service", 10)
	tick("done", 2, "in_service", 3)
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	var progress []string
	for _, l := range lines {
		if strings.HasPrefix(l, "[") {
			progress = append(progress, l)
		}
	}
	if len(progress) != 3 || len(lines) != 4 {
		t.Fatalf("got %d lines (%d of progress), want 4 (3 of progress):\n%s", len(lines), len(progress), out.String())
	}
	if strings.Contains(out.String(), "\r") {
		t.Fatalf("carriage return in a non-terminal output:\n%q", out.String())
	}
}

func TestIsTerminalFalseForFilesAndPipes(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	for name, out := range map[string]*os.File{"file": f, "pipe": w, "/dev/null": null} {
		if isTerminal(out) {
			t.Errorf("%s is taken for a terminal", name)
		}
	}
}
