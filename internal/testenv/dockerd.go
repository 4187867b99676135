package testenv

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// StartDockerd starts a Docker engine of its own with its state in dir (a
// short path: the engine's sockets live under it) and returns its
// DOCKER_HOST and a function that stops it and removes dir. It waits
// until ping answers (connect, a function of the caller, returns nil) or
// ctx ends. The engine gets a bridge of its own, made here and removed by
// stop: an engine started with --bridge=none deletes docker0, which the
// engine of DOCKER_HOST uses.
func StartDockerd(ctx context.Context, dir string, ping func(ctx context.Context, host string) error) (string, func(), error) {
	if _, err := exec.LookPath("dockerd"); err != nil {
		return "", nil, fmt.Errorf("no dockerd: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, err
	}
	sum := sha256.Sum256([]byte(dir))
	br := fmt.Sprintf("shoalbr%x", sum[:3])
	addr := fmt.Sprintf("10.%d.%d.1/24", 200+int(sum[3])%50, sum[4])
	for _, args := range [][]string{{"link", "add", br, "type", "bridge"}, {"addr", "add", addr, "dev", br}, {"link", "set", br, "up"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			exec.Command("ip", "link", "del", br).Run()
			return "", nil, fmt.Errorf("bridge %s: ip %v: %v: %s", br, args, err, out)
		}
	}
	logf, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		exec.Command("ip", "link", "del", br).Run()
		return "", nil, err
	}
	host := "unix://" + filepath.Join(dir, "docker.sock")
	cmd := exec.Command("dockerd", "--data-root", filepath.Join(dir, "root"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "dockerd.pid"), "-H", host, "--iptables=false", "--ip-masq=false", "--bridge="+br)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		exec.Command("ip", "link", "del", br).Run()
		return "", nil, fmt.Errorf("start dockerd: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(time.Minute):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		logf.Close()
		exec.Command("ip", "link", "del", br).Run()
		os.RemoveAll(dir)
	}
	if err := WaitFor(ctx, func() error { return ping(ctx, host) }); err != nil {
		b, _ := os.ReadFile(filepath.Join(dir, "dockerd.log"))
		stop()
		return "", nil, fmt.Errorf("dockerd in %s: %w\n%s", dir, err, tail(b, 2000))
	}
	return host, stop, nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
