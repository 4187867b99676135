// Command replace measures Shoal's self-healing: it runs `shoal up` on an
// example app, kills an instance with SIGKILL again and again, and reports
// how long it takes from the kill until the replacement is in service
// (added to the balancer's pool), split into the phases that make it up,
// taken from Shoal's own event timestamps. It also samples shoal's own CPU
// and memory from /proc at idle and under a wrk load.
//
//	go build -o /tmp/shoal ./cmd/shoal
//	go run ./bench/replace -shoal /tmp/shoal -app examples/meteor-like -n 20
//
// With -runtimes process,docker and -app examples/docker (issue 16) it
// measures the same app binary twice in one run: as a process (runtime:
// process, run.command ./dockerapp), then as a container of the example's
// FROM scratch image (runtime: docker; a Docker engine must answer at
// DOCKER_HOST), the app's own boot measured as a process next to each
// kill of both, so that the difference is the container runtime's.
//
// The example folder is copied to a temp dir; its shoal.yaml is rewritten
// for ephemeral ports and two instances, with BOOT_DELAY_MS=0 in run.env
// (meteor-like reads it). Each kill waits until the oldest instance has
// served for 11s, so that it is not counted as a crash loop.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shoal-dev/shoal/bench/internal/benchkit"
	"github.com/shoal-dev/shoal/internal/client"
)

func main() {
	shoal := flag.String("shoal", "shoal", "the shoal `binary`")
	app := flag.String("app", "examples/meteor-like", "example app `folder`")
	n := flag.Int("n", 20, "number of kills")
	loadFor := flag.Duration("load", 10*time.Second, "wrk load duration for the CPU/RSS sample (0 skips)")
	runtimes := flag.String("runtimes", "", "`process,docker`: with -app examples/docker, measure the app as a process, then as a container")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	if *runtimes != "" {
		err = runRuntimes(ctx, *shoal, *app, *runtimes, *n)
	} else {
		err = run(ctx, *shoal, *app, *n, *loadFor)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "replace:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, bin, src string, kills int, loadFor time.Duration) error {
	dir, err := benchkit.PrepareApp(src, "shoal-bench-", func(c benchkit.AppConfig) {
		g := c.Section("group")
		g["min"], g["desired"], g["max"] = 1, 2, 4
		c.SetEnv("BOOT_DELAY_MS", "0")
	})
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	u, err := benchkit.StartUp(ctx, bin, dir)
	if err != nil {
		return err
	}
	defer u.Stop()
	c := u.Client
	r, err := killLoop(ctx, c, dir, kills)
	if err != nil {
		return err
	}
	fmt.Printf("kills: %d (2 instances, BOOT_DELAY_MS=0)\n", kills)
	r.report("")

	pid := u.Cmd.Process.Pid
	idle, err := sample(ctx, pid, 10*time.Second)
	if err != nil {
		return err
	}
	fmt.Printf("shoal idle (10s): cpu %.2f%% of one core, rss %.1f MiB\n", idle.cpu, idle.rssMiB)
	if loadFor > 0 {
		wrk := exec.CommandContext(ctx, "wrk", "-t2", "-c32", "-d"+loadFor.String(), u.LBURL+"/")
		wout := new(strings.Builder)
		wrk.Stdout = wout
		if err := wrk.Start(); err != nil {
			return fmt.Errorf("wrk: %w", err)
		}
		under, serr := sample(ctx, pid, loadFor-time.Second)
		werr := wrk.Wait()
		if serr != nil || werr != nil {
			return errors.Join(serr, werr)
		}
		rps := regexp.MustCompile(`Requests/sec:\s+(\S+)`).FindStringSubmatch(wout.String())
		r := "?"
		if rps != nil {
			r = rps[1]
		}
		fmt.Printf("shoal under wrk -t2 -c32 (%s req/s through the balancer): cpu %.1f%% of one core, rss %.1f MiB\n", r, under.cpu, under.rssMiB)
	}
	return nil
}

// runRuntimes measures the docker example as a process, then as a
// container, in one run (see the command's doc).
func runRuntimes(ctx context.Context, bin, src, list string, kills int) error {
	if list != "process,docker" {
		return fmt.Errorf("-runtimes %q: only process,docker is measured (the process run builds the binary whose boot both use)", list)
	}
	var bootDir string
	for _, rt := range []string{"process", "docker"} {
		dir, err := benchkit.PrepareApp(src, "shoal-bench-"+rt+"-", func(c benchkit.AppConfig) {
			g := c.Section("group")
			g["min"], g["desired"], g["max"] = 1, 2, 4
			c["runtime"] = rt
			if rt == "process" {
				c.Section("run")["command"] = "./dockerapp"
				delete(c.Section("build"), "dockerfile")
			}
		})
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		u, err := benchkit.StartUp(ctx, bin, dir)
		if err != nil {
			return err
		}
		if bootDir == "" {
			bootDir = dir
		}
		r, err := killLoop(ctx, u.Client, bootDir, kills)
		u.Stop()
		if err != nil {
			return fmt.Errorf("runtime %s: %w", rt, err)
		}
		fmt.Printf("runtime %s: kills: %d (2 instances)\n", rt, kills)
		r.report(rt + ": ")
	}
	return nil
}

// killResult holds one kill loop's phases, one entry per kill.
type killResult struct {
	total, over, detect, launch, boot, boots []time.Duration
}

func (r killResult) report(prefix string) {
	report(prefix+"kill -> replacement in service", r.total)
	report(prefix+"app boot alone (no shoal, 1ms polling)", r.boots)
	report(prefix+"kill -> in service, minus that boot", r.over)
	report(prefix+"  kill -> exit recorded", r.detect)
	report(prefix+"  exit -> replacement process running", r.launch)
	report(prefix+"  process running -> healthy, in pool", r.boot)
}

// killLoop kills the oldest of 2 instances kills times, each time once the
// other is in service, and returns the phases of each replacement, with
// the app's own boot (bootDir's run.command) measured next to each kill.
func killLoop(ctx context.Context, c *client.Client, bootDir string, kills int) (killResult, error) {
	var r killResult
	for range kills {
		// The app's own boot, measured next to each kill so that both see
		// the same machine load.
		b, err := benchkit.AppBoot(ctx, bootDir, 1)
		if err != nil {
			return r, err
		}
		r.boots = append(r.boots, b[0])
		st, err := waitInService(ctx, c, 2)
		if err != nil {
			return r, err
		}
		seq, err := benchkit.LastSeq(ctx, c)
		if err != nil {
			return r, err
		}
		// Kill the oldest instance once it has served for longer than the
		// crash-loop window (10s), so each kill is a first failure that is
		// replaced at once rather than a crash loop that backs off.
		victim := st.Instances[0]
		for _, in := range st.Instances {
			if in.UptimeSeconds > victim.UptimeSeconds {
				victim = in
			}
		}
		if wait := time.Duration((11 - victim.UptimeSeconds) * float64(time.Second)); wait > 0 {
			select {
			case <-ctx.Done():
				return r, ctx.Err()
			case <-time.After(wait):
			}
		}
		killed := time.Now()
		if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
			return r, err
		}
		ph, err := phases(ctx, c, seq, victim.ID)
		if err != nil {
			return r, err
		}
		r.total = append(r.total, ph.inService.Sub(killed))
		r.over = append(r.over, ph.inService.Sub(killed)-b[0])
		r.detect = append(r.detect, ph.failed.Sub(killed))
		r.launch = append(r.launch, ph.starting.Sub(ph.failed))
		r.boot = append(r.boot, ph.inService.Sub(ph.starting))
	}
	return r, nil
}

type phaseTimes struct{ failed, starting, inService time.Time }

// phases follows the events after seq until the replacement of victim is
// in service, and returns when the victim's failure was recorded, when
// the replacement's process ran, and when it went into service.
func phases(ctx context.Context, c *client.Client, seq uint64, victim string) (phaseTimes, error) {
	var ph phaseTimes
	var repl string
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	errDone := errors.New("done")
	err := c.FollowEvents(ctx, seq, func(e client.Event) error {
		switch {
		case e.Instance == victim && e.State == "failed":
			ph.failed = e.Time
		case !ph.failed.IsZero() && repl == "" && e.State == "pending":
			repl = e.Instance
		case e.Instance == repl && repl != "" && e.State == "starting":
			ph.starting = e.Time
		case e.Instance == repl && repl != "" && e.State == "in_service":
			ph.inService = e.Time
			return errDone
		}
		return nil
	})
	if errors.Is(err, errDone) {
		return ph, nil
	}
	if err == nil {
		err = ctx.Err()
	}
	return ph, fmt.Errorf("follow events: %w", err)
}

// waitInService waits (at most a minute) until exactly n instances exist,
// all in service.
func waitInService(ctx context.Context, c *client.Client, n int) (client.Status, error) {
	return benchkit.WaitStatus(ctx, c, time.Minute, 20*time.Millisecond, fmt.Sprintf("%d in service", n),
		func(st client.Status) bool { return st.InService == n && len(st.Instances) == n })
}

// report prints one row of the kill table.
func report(name string, ds []time.Duration) {
	benchkit.Table{NameWidth: 40, NumWidth: 7}.Row(name, ds)
}

type usage struct{ cpu, rssMiB float64 }

// sample measures pid's CPU use (percent of one core) over d and its RSS
// at the end, from /proc.
func sample(ctx context.Context, pid int, d time.Duration) (usage, error) {
	cpu0, err := cpuTicks(pid)
	if err != nil {
		return usage{}, err
	}
	start := time.Now()
	select {
	case <-ctx.Done():
		return usage{}, ctx.Err()
	case <-time.After(d):
	}
	cpu1, err := cpuTicks(pid)
	if err != nil {
		return usage{}, err
	}
	const hz = 100 // USER_HZ on Linux
	pct := float64(cpu1-cpu0) / hz / time.Since(start).Seconds() * 100
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return usage{}, err
	}
	var rssKB float64
	for l := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			rssKB, _ = strconv.ParseFloat(f[1], 64)
		}
	}
	return usage{cpu: pct, rssMiB: rssKB / 1024}, nil
}

func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// Fields after the command: state is 0, utime is 11, stime is 12.
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st, nil
}
