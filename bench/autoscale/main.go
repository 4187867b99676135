// Command autoscale measures how fast Shoal's auto scaling reacts: it runs
// `shoal up` on an example app with a requests-per-second policy, applies
// a step of load through the balancer, and reports from Shoal's own event
// timestamps how long it takes from the step until the desired count rises
// and until the new instances serve traffic (minus the app's own boot
// time, measured next to it), then, once the load stops, until the group
// scales in and the instance it removes has drained and stopped.
//
//	go build -o /tmp/shoal ./cmd/shoal
//	go run ./bench/autoscale -shoal /tmp/shoal -app examples/meteor-like -n 5
//
// The example folder is copied to a temp dir; its shoal.yaml is rewritten
// for ephemeral ports, min 1, max 4, desired 1, BOOT_DELAY_MS=0, and an
// autoscale section: rps_per_instance target 20, the default interval
// (500ms), -window (default 5s) and -cooldown-out (default 10s), the product
// defaults, out_window left to its default (1s), warmup 5s, cooldown_in 5s
// and stabilization -stab.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"time"

	"github.com/shoal-dev/shoal/bench/internal/benchkit"
	"github.com/shoal-dev/shoal/internal/client"
)

func main() {
	shoal := flag.String("shoal", "shoal", "the shoal `binary`")
	app := flag.String("app", "examples/meteor-like", "example app `folder`")
	n := flag.Int("n", 5, "number of load steps")
	rps := flag.Int("rps", 80, "load step, requests per second (the policy's target is 20 per instance)")
	window := flag.Duration("window", 5*time.Second, "autoscale.window")
	stab := flag.Duration("stab", 30*time.Second, "autoscale.stabilization")
	coolOut := flag.Duration("cooldown-out", 10*time.Second, "autoscale.cooldown_out")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cfg := benchConfig{rps: *rps, window: *window, stab: *stab, coolOut: *coolOut}
	if err := run(ctx, *shoal, *app, *n, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "autoscale:", err)
		os.Exit(1)
	}
}

type benchConfig struct {
	rps     int
	window  time.Duration
	stab    time.Duration
	coolOut time.Duration
}

// cycle is what one load step measured.
type cycle struct {
	desired   time.Duration // step -> desired count rises
	firstNew  time.Duration // step -> first new instance in service
	full      time.Duration // step -> desired reaches the count the load needs
	allNew    time.Duration // step -> that many instances in service
	boot      time.Duration // the app's own boot, measured before the step
	inDecided time.Duration // load stop -> first scale-in decision
	inStopped time.Duration // that decision -> its instance drained and stopped
	to        int           // the count scaled out to
	failed    int64
	requests  int64
}

func run(ctx context.Context, bin, src string, n int, cfg benchConfig) error {
	u, err := startUp(ctx, bin, src, cfg)
	if err != nil {
		return err
	}
	defer stopUp(u)
	var cycles []cycle
	for i := range n {
		if _, err := waitWarm(ctx, u.Client, 5*time.Second+cfg.window+time.Second); err != nil {
			return err
		}
		boots, err := benchkit.AppBoot(ctx, u.Dir, 1)
		if err != nil {
			return err
		}
		cy, err := oneCycle(ctx, u, cfg)
		if err != nil {
			return fmt.Errorf("cycle %d: %w", i+1, err)
		}
		cy.boot = boots[0]
		cycles = append(cycles, cy)
		fmt.Fprintf(os.Stderr, "cycle %d: 1 -> %d, desired rose after %s, full after %s, all serving after %s (boot %s); scale-in decided %s after stop, drained+stopped in %s; %d/%d failed\n",
			i+1, cy.to, cy.desired.Round(time.Millisecond), cy.full.Round(time.Millisecond), cy.allNew.Round(time.Millisecond), cy.boot.Round(time.Millisecond),
			cy.inDecided.Round(time.Millisecond), cy.inStopped.Round(time.Millisecond), cy.failed, cy.requests)
	}
	col := func(f func(cycle) time.Duration) []time.Duration {
		out := make([]time.Duration, len(cycles))
		for i, c := range cycles {
			out[i] = f(c)
		}
		return out
	}
	var failed, total int64
	for _, c := range cycles {
		failed += c.failed
		total += c.requests
	}
	fmt.Printf("load steps: %d (1 -> up to 4 instances, %d req/s step, target 20 req/s per instance, window %s, out_window default, cooldown_out %s, stabilization %s, interval default (500ms), BOOT_DELAY_MS=0)\n",
		n, cfg.rps, cfg.window, cfg.coolOut, cfg.stab)
	report("load step -> desired rises", col(func(c cycle) time.Duration { return c.desired }))
	report("app boot alone (no shoal, 1ms polling)", col(func(c cycle) time.Duration { return c.boot }))
	report("load step -> first new instance serving", col(func(c cycle) time.Duration { return c.firstNew }))
	report("first new serving, minus boot", col(func(c cycle) time.Duration { return c.firstNew - c.boot }))
	report("desired rises -> first new serving", col(func(c cycle) time.Duration { return c.firstNew - c.desired }))
	report(fmt.Sprintf("load step -> desired = %d", wantCount(cfg.rps)), col(func(c cycle) time.Duration { return c.full }))
	report(fmt.Sprintf("load step -> %d instances serving", wantCount(cfg.rps)), col(func(c cycle) time.Duration { return c.allNew }))
	report(fmt.Sprintf("load stop -> scale-in decided (stab. %s)", cfg.stab), col(func(c cycle) time.Duration { return c.inDecided }))
	report("  same, minus the stabilization window", col(func(c cycle) time.Duration { return c.inDecided - cfg.stab }))
	report("scale-in decided -> drained and stopped", col(func(c cycle) time.Duration { return c.inStopped }))
	fmt.Printf("requests during the cycles: %d, failed: %d\n", total, failed)
	return nil
}

var desiredChange = regexp.MustCompile(`desired (\d+) -> (\d+)`)

// oneCycle applies one load step, follows the events until the group has
// scaled out and its new instances serve, stops the load and follows them
// until the first scale-in has stopped its instance, then waits for min.
func oneCycle(ctx context.Context, u *benchkit.Up, cfg benchConfig) (cycle, error) {
	var cy cycle
	seq, err := benchkit.LastSeq(ctx, u.Client)
	if err != nil {
		return cy, err
	}
	stopLoad := make(chan struct{})
	step := time.Now()
	l, err := startLoad(u.LBURL+"/", cfg.rps, stopLoad)
	if err != nil {
		return cy, err
	}
	loadStopped := false
	endLoad := func() {
		if !loadStopped {
			loadStopped = true
			close(stopLoad)
			<-l.done
		}
	}
	defer endLoad()

	// Scale-out: the first increase, then until the count the load needs
	// (rps / 20, at most max 4) serves.
	want := wantCount(cfg.rps)
	errDone := errors.New("done")
	fctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err = u.Client.FollowEvents(fctx, seq, func(e client.Event) error {
		seq = e.Seq
		if m := desiredChange.FindStringSubmatch(e.Reason); e.Type == "autoscale" && m != nil {
			from, _ := strconv.Atoi(m[1])
			to, _ := strconv.Atoi(m[2])
			if to > from && cy.desired == 0 {
				cy.desired = e.Time.Sub(step)
			}
			if to >= want && cy.full == 0 {
				cy.full, cy.to = e.Time.Sub(step), to
			}
		}
		if cy.desired == 0 || e.Type != "state" || e.State != "in_service" || e.From != "starting" {
			return nil
		}
		if cy.firstNew == 0 {
			cy.firstNew = e.Time.Sub(step)
		}
		if cy.full == 0 {
			return nil
		}
		st, err := u.Client.Status(fctx)
		if err == nil && st.InService >= want {
			cy.allNew = e.Time.Sub(step)
			return errDone
		}
		return nil
	})
	cancel()
	if !errors.Is(err, errDone) {
		return cy, fmt.Errorf("waiting for the scale-out: %v", err)
	}

	// Let the new capacity serve a few seconds, then stop the load.
	select {
	case <-ctx.Done():
		return cy, ctx.Err()
	case <-time.After(3 * time.Second):
	}
	endLoad()
	stopped := time.Now()
	cy.failed, cy.requests = l.Failed(), l.Failed()+l.OK()

	var inAt time.Time
	victim := ""
	errDone = errors.New("done")
	fctx, cancel = context.WithTimeout(ctx, cfg.stab+2*time.Minute)
	err = u.Client.FollowEvents(fctx, seq, func(e client.Event) error {
		if m := desiredChange.FindStringSubmatch(e.Reason); e.Type == "autoscale" && m != nil && inAt.IsZero() {
			from, _ := strconv.Atoi(m[1])
			to, _ := strconv.Atoi(m[2])
			if to < from {
				inAt = e.Time
				cy.inDecided = e.Time.Sub(stopped)
			}
		}
		if inAt.IsZero() || e.Type != "state" {
			return nil
		}
		if e.State == "draining" && victim == "" {
			victim = e.Instance
		}
		if e.Instance == victim && e.State == "stopped" {
			cy.inStopped = e.Time.Sub(inAt)
			return errDone
		}
		return nil
	})
	cancel()
	if !errors.Is(err, errDone) {
		return cy, fmt.Errorf("waiting for the scale-in: %v", err)
	}
	_, err = waitCount(ctx, u.Client, 1)
	return cy, err
}

// wantCount is the instance count a load of rps needs at 20 per instance,
// within max 4.
func wantCount(rps int) int { return min(4, (rps+19)/20) }
