package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/shoal-dev/shoal/internal/client"
)

// upProcess is a running `shoal up` on a temp copy of the example.
type upProcess struct {
	dir   string
	cmd   *exec.Cmd
	lbURL string
	c     *client.Client
}

var readyLine = regexp.MustCompile(`serving on (http://\S+) \(admin (http://\S+)\)`)

// startUp copies src, rewrites its shoal.yaml and runs `shoal up` until
// its ready line.
func startUp(ctx context.Context, bin, src string, cfg benchConfig) (*upProcess, error) {
	dir, err := os.MkdirTemp("", "shoal-bench-autoscale-")
	if err != nil {
		return nil, err
	}
	if err := prepare(src, dir, cfg); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, "up")
	cmd.Dir = dir
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	u := &upProcess{dir: dir, cmd: cmd}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var adminURL string
	deadline := time.After(2 * time.Minute)
	for u.lbURL == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				u.stop()
				return nil, errors.New("shoal up exited before it was ready")
			}
			if m := readyLine.FindStringSubmatch(l); m != nil {
				u.lbURL, adminURL = m[1], m[2]
			}
		case <-deadline:
			u.stop()
			return nil, errors.New("shoal up not ready within 2 minutes")
		}
	}
	go func() {
		for range lines { // keep the pipe drained
		}
	}()
	tok, err := os.ReadFile(filepath.Join(dir, ".shoal", "admin.token"))
	if err != nil {
		u.stop()
		return nil, err
	}
	u.c = client.New(adminURL, strings.TrimSpace(string(tok)))
	return u, nil
}

// stop ends shoal up (SIGINT: drain and stop) and removes the copy.
func (u *upProcess) stop() {
	u.cmd.Process.Signal(syscall.SIGINT)
	u.cmd.Wait()
	os.RemoveAll(u.dir)
}

// prepare copies the example app into dir and rewrites its shoal.yaml.
func prepare(src, dir string, cfg benchConfig) error {
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
		return os.WriteFile(target, b, 0o644)
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
	sec("balancer")["drain_timeout"] = "5s"
	sec("admin")["listen"] = "127.0.0.1:0"
	g := sec("group")
	g["min"], g["desired"], g["max"] = 1, 1, 4
	env, _ := sec("run")["env"].(map[string]any)
	if env == nil {
		env = map[string]any{}
	}
	env["BOOT_DELAY_MS"] = "0"
	sec("run")["env"] = env
	doc["autoscale"] = map[string]any{
		"window":        cfg.window.String(),
		"cooldown_out":  cfg.coolOut.String(),
		"warmup":        "5s",
		"cooldown_in":   "5s",
		"stabilization": cfg.stab.String(),
		"policies":      []any{map[string]any{"name": "rps", "metric": "rps_per_instance", "target": 20}},
	}
	delete(doc, "data_dir")
	out, err := yaml.Marshal(doc)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o644)
}

// load sends GETs at a fixed rate until stop is closed.
type load struct {
	ok, failed atomic.Int64
	done       chan struct{}
}

func startLoad(url string, rps int, stop <-chan struct{}) *load {
	l := &load{done: make(chan struct{})}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64}}
	tokens := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(tokens)
		tick := time.NewTicker(time.Second / time.Duration(rps))
		defer tick.Stop()
		for range 3600 * rps { // at most an hour of load
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			select {
			case <-stop:
				return
			case tokens <- struct{}{}:
			}
		}
	})
	for range 32 {
		wg.Go(func() {
			for range tokens {
				resp, err := hc.Get(url)
				if err != nil {
					l.failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					l.failed.Add(1)
					continue
				}
				l.ok.Add(1)
			}
		})
	}
	go func() {
		wg.Wait()
		hc.CloseIdleConnections()
		close(l.done)
	}()
	return l
}

// waitCount waits until exactly n instances are in service and desired.
func waitCount(ctx context.Context, c *client.Client, n int) (client.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		st, err := c.Status(ctx)
		if err == nil && st.Desired == n && st.InService == n && len(st.Instances) == n {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("waiting for %d in service: %w", n, ctx.Err())
		case <-t.C:
		}
	}
}

// waitWarm waits until one instance serves and has served for at least d,
// so that its metrics fill the window.
func waitWarm(ctx context.Context, c *client.Client, d time.Duration) (client.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		st, err := c.Status(ctx)
		if err == nil && st.Desired == 1 && st.InService == 1 && len(st.Instances) == 1 &&
			time.Since(st.Instances[0].Since) >= d {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("waiting for 1 warm instance: %w", ctx.Err())
		case <-t.C:
		}
	}
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

// appBoot starts the app's run.command directly (no shoal) n times and
// measures from exec until its health path answers 200, polling every
// millisecond: the app's own boot time.
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
		for deadline := start.Add(30 * time.Second); time.Now().Before(deadline) && up == 0; {
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

func report(name string, ds []time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	q := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	fmt.Printf("%-46s median %8.1fms  p90 %8.1fms  max %8.1fms\n", name, ms(q(0.5)), ms(q(0.9)), ms(s[len(s)-1]))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
