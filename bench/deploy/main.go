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
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"
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

var ready = regexp.MustCompile(`serving on (http://\S+) \(admin (http://\S+)\)`)

func run(ctx context.Context, bin, src string, delays []int, n int) error {
	dir, err := os.MkdirTemp("", "shoal-bench-deploy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := copyDir(src, dir); err != nil {
		return err
	}
	if err := setBoot(dir, delays[0], true); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, "up")
	cmd.Dir = dir
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
	lb := ""
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if m := ready.FindStringSubmatch(sc.Text()); m != nil {
			lb = m[1]
			break
		}
	}
	if lb == "" {
		return fmt.Errorf("shoal up did not become ready")
	}
	go io.Copy(io.Discard, out)

	fmt.Printf("| app boot | deploys | deploy time median | min | max | requests during deploys | failed |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	version := 0
	for _, boot := range delays {
		// Warm-up deploy to the boot delay (a config-only release), not measured.
		if err := setBoot(dir, boot, false); err != nil {
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
			l := startLoad(lctx, lb)
			d, msg, err := deploy(ctx, bin, dir)
			stopLoad()
			l.wg.Wait()
			if err != nil {
				return fmt.Errorf("deploy: %w\n%s", err, msg)
			}
			times = append(times, d)
			total += l.ok.Load() + l.failed.Load()
			failed += l.failed.Load()
		}
		slices.Sort(times)
		fmt.Printf("| %d ms | %d | %s | %s | %s | %d | %d |\n", boot, n, times[len(times)/2].Round(time.Millisecond),
			times[0].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond), total, failed)
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

type load struct {
	ok, failed atomic.Int64
	wg         sync.WaitGroup
}

// startLoad sends GETs and POSTs (2 workers each) until ctx ends.
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
				resp, err := hc.Do(req)
				if ctx.Err() != nil {
					return
				}
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
	return l
}

func setBoot(dir string, boot int, first bool) error {
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
	if first {
		sec("balancer")["listen"] = "127.0.0.1:0"
		sec("balancer")["drain_timeout"] = "2s"
		sec("admin")["listen"] = "127.0.0.1:0"
		g := sec("group")
		g["min"], g["desired"], g["max"] = 1, 4, 8
		h := sec("health")
		h["interval"], h["timeout"] = "500ms", "400ms"
		delete(doc, "data_dir")
	}
	env, _ := sec("run")["env"].(map[string]any)
	if env == nil {
		env = map[string]any{}
		sec("run")["env"] = env
	}
	env["BOOT_DELAY_MS"] = strconv.Itoa(boot)
	out, err := yaml.Marshal(doc)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o644)
}

func copyDir(src, dir string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
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
}
