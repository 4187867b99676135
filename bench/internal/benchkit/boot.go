package benchkit

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"go.yaml.in/yaml/v3"
)

// bootTimeout bounds one boot in AppBoot.
const bootTimeout = 30 * time.Second

// AppBoot starts the run.command of the app in dir directly (no shoal) n
// times, one after another, and measures from exec until its health path
// answers 200, polling every millisecond: the app's own boot time, which
// no controller can beat. Each process gets PORT (a free port) and
// run.env, and is killed once measured. It blocks for the n boots.
func AppBoot(ctx context.Context, dir string, n int) ([]time.Duration, error) {
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
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "shoal.yaml"), err)
	}
	if doc.Health.Path == "" {
		doc.Health.Path = "/"
	}
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	var out []time.Duration
	for range n {
		up, err := bootOnce(ctx, hc, dir, doc.Run.Command, doc.Run.Env, doc.Health.Path)
		if err != nil {
			return nil, err
		}
		out = append(out, up)
	}
	return out, nil
}

// bootOnce runs command once and returns how long until path answered 200.
func bootOnce(ctx context.Context, hc *http.Client, dir, command string, env map[string]string, path string) (time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", "exec "+command)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), fmt.Sprintf("PORT=%d", port))
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start app: %w", err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	url := fmt.Sprintf("http://127.0.0.1:%d%s", port, path)
	for deadline := start.Add(bootTimeout); time.Now().Before(deadline) && ctx.Err() == nil; {
		if resp, err := hc.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start), nil
			}
		}
		time.Sleep(time.Millisecond)
	}
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	return 0, fmt.Errorf("app did not boot within %s", bootTimeout)
}
