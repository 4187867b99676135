package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/bench/internal/benchkit"
	"github.com/shoal-dev/shoal/internal/client"
)

// startUp copies src to a temp folder, rewrites its shoal.yaml for the
// benchmark (min 1, desired 1, max 4, BOOT_DELAY_MS=0 and the autoscale
// section from cfg) and runs `shoal up` there until its ready line. The
// caller stops it with stopUp, which also removes the folder.
func startUp(ctx context.Context, bin, src string, cfg benchConfig) (*benchkit.Up, error) {
	dir, err := benchkit.PrepareApp(src, "shoal-bench-autoscale-", func(c benchkit.AppConfig) {
		c.Section("balancer")["drain_timeout"] = "5s"
		g := c.Section("group")
		g["min"], g["desired"], g["max"] = 1, 1, 4
		c.SetEnv("BOOT_DELAY_MS", "0")
		c["autoscale"] = map[string]any{
			"window":        cfg.window.String(),
			"cooldown_out":  cfg.coolOut.String(),
			"warmup":        "5s",
			"cooldown_in":   "5s",
			"stabilization": cfg.stab.String(),
			"policies":      []any{map[string]any{"name": "rps", "metric": "rps_per_instance", "target": 20}},
		}
	})
	if err != nil {
		return nil, err
	}
	u, err := benchkit.StartUp(ctx, bin, dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return u, nil
}

// stopUp ends shoal up (SIGINT: drain and stop) and removes its folder.
func stopUp(u *benchkit.Up) {
	u.Stop()
	os.RemoveAll(u.Dir)
}

// load sends GETs at a fixed rate until stop is closed; done is closed
// once every request has ended.
type load struct {
	benchkit.Tally
	done chan struct{}
}

func startLoad(url string, rps int, stop <-chan struct{}) (*load, error) {
	get, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
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
				l.Send(hc, get.Clone(context.Background()))
			}
		})
	}
	go func() {
		wg.Wait()
		hc.CloseIdleConnections()
		close(l.done)
	}()
	return l, nil
}

// waitCount waits until exactly n instances are in service and desired.
func waitCount(ctx context.Context, c *client.Client, n int) (client.Status, error) {
	return benchkit.WaitStatus(ctx, c, 10*time.Minute, 50*time.Millisecond, fmt.Sprintf("%d in service", n),
		func(st client.Status) bool { return st.Desired == n && st.InService == n && len(st.Instances) == n })
}

// waitWarm waits until one instance serves and has served for at least d,
// so that its metrics fill the window.
func waitWarm(ctx context.Context, c *client.Client, d time.Duration) (client.Status, error) {
	return benchkit.WaitStatus(ctx, c, 10*time.Minute, 100*time.Millisecond, "1 warm instance",
		func(st client.Status) bool {
			return st.Desired == 1 && st.InService == 1 && len(st.Instances) == 1 && time.Since(st.Instances[0].Since) >= d
		})
}

func report(name string, ds []time.Duration) {
	benchkit.Table{NameWidth: 46, NumWidth: 8}.Row(name, ds)
}
