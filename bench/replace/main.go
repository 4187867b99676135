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
// The example folder is copied to a temp dir; its shoal.yaml is rewritten
// for ephemeral ports and two instances, with BOOT_DELAY_MS=0 in run.env
// (meteor-like reads it). Each kill waits until the oldest instance has
// served for 11s, so that it is not counted as a crash loop.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/shoal-dev/shoal/internal/client"
)

func main() {
	shoal := flag.String("shoal", "shoal", "the shoal `binary`")
	app := flag.String("app", "examples/meteor-like", "example app `folder`")
	n := flag.Int("n", 20, "number of kills")
	loadFor := flag.Duration("load", 10*time.Second, "wrk load duration for the CPU/RSS sample (0 skips)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *shoal, *app, *n, *loadFor); err != nil {
		fmt.Fprintln(os.Stderr, "replace:", err)
		os.Exit(1)
	}
}

var ready = regexp.MustCompile(`serving on (http://\S+) \(admin (http://\S+)\)`)

func run(ctx context.Context, bin, src string, kills int, loadFor time.Duration) error {
	dir, err := os.MkdirTemp("", "shoal-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := prepare(src, dir); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, "up")
	cmd.Dir = dir
	cmd.Stderr = nil
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Wait()
	}()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var lbURL, adminURL string
	deadline := time.After(2 * time.Minute)
	for lbURL == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				return errors.New("shoal up exited before it was ready")
			}
			if m := ready.FindStringSubmatch(l); m != nil {
				lbURL, adminURL = m[1], m[2]
			}
		case <-deadline:
			return errors.New("shoal up not ready within 2 minutes")
		}
	}
	go func() {
		for range lines { // keep the pipe drained
		}
	}()
	tok, err := os.ReadFile(filepath.Join(dir, ".shoal", "admin.token"))
	if err != nil {
		return err
	}
	c := client.New(adminURL, strings.TrimSpace(string(tok)))

	var total, detect, launch, boot, boots []time.Duration
	for range kills {
		// The app's own boot, measured next to each kill so that both see
		// the same machine load.
		b, err := appBoot(ctx, dir, 1)
		if err != nil {
			return err
		}
		boots = append(boots, b[0])
		st, err := waitInService(ctx, c, 2)
		if err != nil {
			return err
		}
		seq, err := lastSeq(ctx, c)
		if err != nil {
			return err
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
				return ctx.Err()
			case <-time.After(wait):
			}
		}
		killed := time.Now()
		if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
			return err
		}
		ph, err := phases(ctx, c, seq, victim.ID)
		if err != nil {
			return err
		}
		total = append(total, ph.inService.Sub(killed))
		detect = append(detect, ph.failed.Sub(killed))
		launch = append(launch, ph.starting.Sub(ph.failed))
		boot = append(boot, ph.inService.Sub(ph.starting))
	}
	fmt.Printf("kills: %d (2 instances, BOOT_DELAY_MS=0)\n", kills)
	report("kill -> replacement in service", total)
	over := make([]time.Duration, len(total))
	for i, d := range total {
		over[i] = d - boots[i]
	}
	report("app boot alone (no shoal, 1ms polling)", boots)
	report("kill -> in service, minus that boot", over)
	report("  kill -> exit recorded", detect)
	report("  exit -> replacement process running", launch)
	report("  process running -> healthy, in pool", boot)

	pid := cmd.Process.Pid
	idle, err := sample(ctx, pid, 10*time.Second)
	if err != nil {
		return err
	}
	fmt.Printf("shoal idle (10s): cpu %.2f%% of one core, rss %.1f MiB\n", idle.cpu, idle.rssMiB)
	if loadFor > 0 {
		wrk := exec.CommandContext(ctx, "wrk", "-t2", "-c32", "-d"+loadFor.String(), lbURL+"/")
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

func lastSeq(ctx context.Context, c *client.Client) (uint64, error) {
	var after uint64
	for range 10000 {
		evs, err := c.Events(ctx, after, 500)
		if err != nil {
			return 0, err
		}
		if len(evs) == 0 {
			return after, nil
		}
		after = evs[len(evs)-1].Seq
	}
	return after, nil
}

func waitInService(ctx context.Context, c *client.Client, n int) (client.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		st, err := c.Status(ctx)
		if err == nil && st.InService == n && len(st.Instances) == n {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("waiting for %d in service: %w", n, ctx.Err())
		case <-t.C:
		}
	}
}

func report(name string, ds []time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	q := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	fmt.Printf("%-40s median %7.1fms  p90 %7.1fms  max %7.1fms\n", name,
		ms(q(0.5)), ms(q(0.9)), ms(s[len(s)-1]))
}

// appBoot starts the app's run.command directly (no shoal) n times and
// measures from exec until its health path answers 200, polling every
// millisecond: the app's own boot time, which no controller can beat.
func appBoot(ctx context.Context, dir string, n int) ([]time.Duration, error) {
	b, err := os.ReadFile(filepath.Join(dir, "shoal.yaml"))
	if err != nil {
		return nil, err
	}
	var doc struct {
		Run struct {
			Command string            `yaml:"command"`
			Env     map[string]string `yaml:"env"`
		} `yaml:"run"`
		Health struct {
			Path string `yaml:"path"`
		} `yaml:"health"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	if doc.Health.Path == "" {
		doc.Health.Path = "/"
	}
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	var out []time.Duration
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", "exec "+doc.Run.Command)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), fmt.Sprintf("PORT=%d", port))
		for k, v := range doc.Run.Env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		start := time.Now()
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		url := fmt.Sprintf("http://127.0.0.1:%d%s", port, doc.Health.Path)
		var up time.Duration
		for deadline := start.Add(30 * time.Second); time.Now().Before(deadline); {
			if resp, err := hc.Get(url); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					up = time.Since(start)
					break
				}
			}
			time.Sleep(time.Millisecond)
		}
		cmd.Process.Kill()
		cmd.Wait()
		if up == 0 {
			return nil, fmt.Errorf("app did not boot within 30s")
		}
		out = append(out, up)
	}
	return out, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

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

// prepare copies the example app into dir and rewrites its shoal.yaml.
func prepare(src, dir string) error {
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if rel == ".shoal" {
			return filepath.SkipDir
		}
		target := filepath.Join(dir, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode().Perm())
	})
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	path := filepath.Join(dir, "shoal.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	sec := func(k string) map[string]any {
		m, _ := doc[k].(map[string]any)
		if m == nil {
			m = map[string]any{}
			doc[k] = m
		}
		return m
	}
	sec("balancer")["listen"] = "127.0.0.1:0"
	sec("admin")["listen"] = "127.0.0.1:0"
	g := sec("group")
	g["min"], g["desired"], g["max"] = 1, 2, 4
	env, _ := sec("run")["env"].(map[string]any)
	if env == nil {
		env = map[string]any{}
	}
	env["BOOT_DELAY_MS"] = "0"
	sec("run")["env"] = env
	delete(doc, "data_dir")
	out, err := yaml.Marshal(doc)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o644)
}
