// Command deploy measures rolling deploys: it runs `shoal up` on an
// example app with 4 instances and, for each app boot time given, runs
// `shoal deploy` several times (a code change each time) under a constant
// GET and POST load through the balancer. It reports the deploy's wall
// time (the CLI's, build included) next to the boot time, and the number
// of failed requests during the deploys (the target is zero).
//
//	go build -o /tmp/shoal ./cmd/shoal
//	go run ./bench/deploy -shoal /tmp/shoal -app examples/meteor-like -boot 0,1000,3000 -n 3
//
// The example folder is copied to a temp dir; its shoal.yaml is rewritten
// for ephemeral ports, 4 instances, a 2s drain timeout, and BOOT_DELAY_MS
// in run.env (meteor-like waits that long before it listens).
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/bench/internal/benchkit"
)

func main() {
	shoal := flag.String("shoal", "shoal", "the shoal `binary`")
	app := flag.String("app", "examples/meteor-like", "example app `folder`")
	boots := flag.String("boot", "0,1000,3000", "comma-separated app boot delays in `ms` (BOOT_DELAY_MS)")
	n := flag.Int("n", 3, "deploys per boot delay")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var delays []int
	for _, s := range strings.Split(*boots, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || v < 0 {
			fmt.Fprintf(os.Stderr, "deploy: bad -boot %q\n", s)
			os.Exit(2)
		}
		delays = append(delays, v)
	}
	if err := run(ctx, *shoal, *app, delays, *n); err != nil {
		fmt.Fprintln(os.Stderr, "deploy:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, bin, src string, delays []int, n int) error {
	dir, err := benchkit.PrepareApp(src, "shoal-bench-deploy-", func(c benchkit.AppConfig) {
		c.Section("balancer")["drain_timeout"] = "2s"
		g := c.Section("group")
		g["min"], g["desired"], g["max"] = 1, 4, 8
		h := c.Section("health")
		h["interval"], h["timeout"] = "500ms", "400ms"
		c.SetEnv("BOOT_DELAY_MS", strconv.Itoa(delays[0]))
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

	fmt.Printf("| app boot | deploys | deploy time median | min | max | requests during deploys | failed |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	version := 0
	for _, boot := range delays {
		// Warm-up deploy to the boot delay (a config-only release), not measured.
		if err := benchkit.EditConfig(dir, func(c benchkit.AppConfig) { c.SetEnv("BOOT_DELAY_MS", strconv.Itoa(boot)) }); err != nil {
			return err
		}
		if _, _, err := deploy(ctx, bin, dir); err != nil {
			return fmt.Errorf("warm-up deploy: %w", err)
		}
		var times []time.Duration
		var total, failed int64
		for range n {
			version++
			if err := os.WriteFile(filepath.Join(dir, "VERSION"), []byte(strconv.Itoa(version)), 0o644); err != nil {
				return err
			}
			lctx, stopLoad := context.WithCancel(ctx)
			l := startLoad(lctx, u.LBURL)
			d, msg, err := deploy(ctx, bin, dir)
			stopLoad()
			l.wg.Wait()
			if err != nil {
				return fmt.Errorf("deploy: %w\n%s", err, msg)
			}
			times = append(times, d)
			total += l.OK() + l.Failed()
			failed += l.Failed()
		}
		s := benchkit.Sorted(times)
		fmt.Printf("| %d ms | %d | %s | %s | %s | %d | %d |\n", boot, n, benchkit.Quantile(s, 0.5).Round(time.Millisecond),
			s[0].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond), total, failed)
	}
	return nil
}

func deploy(ctx context.Context, bin, dir string) (time.Duration, string, error) {
	start := time.Now()
	cmd := exec.CommandContext(ctx, bin, "deploy")
	cmd.Dir = dir
	b, err := cmd.CombinedOutput()
	return time.Since(start), string(b), err
}

// load is a closed-loop load: its workers send one request after another.
type load struct {
	benchkit.Tally
	wg sync.WaitGroup
}

// startLoad sends GETs and POSTs (2 workers each) until ctx ends; wait
// for l.wg after that.
func startLoad(ctx context.Context, base string) *load {
	l := &load{}
	hc := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{Proxy: nil}}
	for i := range 4 {
		l.wg.Go(func() {
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/", nil)
				if i%2 == 1 {
					req, _ = http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/echo", strings.NewReader("x"))
				}
				l.Send(hc, req)
			}
		})
	}
	return l
}
