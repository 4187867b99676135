package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/client"
)

// A deploy streams its progress every 250 ms; a CI log must get one line
// per change of the rollout, not one per tick of its clock.
func TestProgressOneLinePerChangeWhenNotATerminal(t *testing.T) {
	var out bytes.Buffer
	p := newProgressPrinter(&out)
	pr := func(phase string, done int, elapsed time.Duration, state string) client.DeployLine {
		ph, err := api.ParseRolloutPhase(phase)
		if err != nil {
			t.Fatal(err)
		}
		st, err := api.ParseState(state)
		if err != nil {
			t.Fatal(err)
		}
		return client.DeployLine{Progress: &client.RolloutProgress{Target: 2, Phase: ph, Done: done, Total: 2,
			Elapsed: elapsed, Instances: []client.RolloutInstance{{ID: "app-v2-abc1", Release: 2, State: st}}}}
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

func TestIsTerminalTrueForAPseudoTerminal(t *testing.T) {
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	defer ptmx.Close()
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	pts, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer pts.Close()
	if !isTerminal(pts) {
		t.Fatal("a pseudo-terminal is not taken for a terminal")
	}
}

// On a terminal the progress line is redrawn in place; a log line or the
// result starts on a line of its own.
func TestProgressRedrawnOnATerminal(t *testing.T) {
	var out bytes.Buffer
	p := &progressPrinter{w: &out, tty: true}
	for i := range 5 {
		p.line(client.DeployLine{Progress: &client.RolloutProgress{Target: 2, Phase: api.PhaseSurging, Total: 1,
			Elapsed: time.Duration(i) * 250 * time.Millisecond}})
	}
	p.line(client.DeployLine{Log: "built"})
	if err := p.finish("deploy", &client.DeployResult{OK: true, Version: 2}, nil); err != nil {
		t.Fatal(err)
	}
	p = &progressPrinter{w: &out, tty: true, cols: 20}
	p.line(client.DeployLine{Progress: &client.RolloutProgress{Target: 2, Phase: api.PhaseSurging, Total: 1}})
	p.endLine()
	if got := out.String(); !strings.HasSuffix(got, "\n\r\033[K[------------------\n") {
		t.Fatalf("a line wider than the terminal is not cut to fit: %q", got)
	}
	s := out.String()
	s = s[:strings.LastIndex(s, "\r")]
	if strings.Count(s, "\r\033[K[") != 5 || strings.Count(s, "\n") != 3 || !strings.HasSuffix(s, "1.0s | \n  built\ndeploy: v2 serves\n") {
		t.Fatalf("output %q", s)
	}
}
