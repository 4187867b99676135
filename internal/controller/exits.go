package controller

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

// watchExits records every instance exit the host reports until ctx ends.
// An exit that nobody asked for fails the instance at once: it leaves the
// pool and the reconciler is woken, so the replacement starts without
// waiting for a health check or a tick.
func (c *Controller) watchExits(ctx context.Context) {
	exits := c.o.Host.Exits()
	var ended <-chan string
	if en, ok := c.o.Host.(Ender); ok {
		ended = en.Ended()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-ended:
			c.ended(id)
		case e, ok := <-exits:
			if !ok {
				return
			}
			c.exited(ctx, e)
		}
	}
}

// ended takes an instance a host reports ended (Ender) out of the pool
// before its Exit arrives; one being drained is left to its drain.
func (c *Controller) ended(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	in := c.instances[id]
	if in == nil || in.exit != nil || !in.inPool || in.state == api.Draining {
		return
	}
	in.inPool = false
	c.o.Pool.Remove(in.addr)
	c.log.Info("instance ended, out of the pool until its exit is reported", "instance", id)
}

func (c *Controller) exited(ctx context.Context, e Exit) {
	c.mu.Lock()
	in := c.instances[e.ID]
	if in == nil || in.exit != nil {
		c.mu.Unlock()
		return
	}
	// An exit with a reason is the host's report that it lost the
	// instance, not the end of its process: there are no logs to read.
	crashed := in.state != api.Draining && !e.Stopped && e.Reason == ""
	env := c.env
	if crashed && in.inPool {
		// Out of the pool before the logs are read: a docker host reads
		// them from its engine, which takes milliseconds under load, and
		// every request sent to the dead target meanwhile costs a retry
		// (see below for why it is a removal, not a drain).
		in.inPool = false
		c.o.Pool.Remove(in.addr)
	}
	c.mu.Unlock()
	// A crash says why: the last lines of its output, read the way a
	// failed deploy reads them, without the lock (the host reports an exit
	// once the output is in the log).
	var logs []string
	if crashed {
		logs = c.tailLogs(ctx, e.ID, env)
	}

	c.mu.Lock()
	if c.instances[e.ID] != in || in.exit != nil {
		c.mu.Unlock()
		return
	}
	in.exit = &e
	close(in.exited)
	if in.state == api.Draining {
		// Being stopped on purpose; the stopping goroutine records the end.
		c.mu.Unlock()
		return
	}
	addr, inPool := in.addr, in.inPool
	in.inPool = false
	if inPool {
		// The process is gone: the target gets no new request from now on
		// and is deleted once its requests in flight have failed. Those
		// fail on their own with connection errors, which the balancer
		// retries on another instance; cutting them here (a drain with no
		// timeout) would end them with the drain-deadline cause, which is
		// never retried, and turn a harmless retry into a 502.
		c.o.Pool.Remove(addr)
	}
	if e.Reason != "" {
		c.lostLocked(in, e.Reason)
		c.mu.Unlock()
		c.poke()
		return
	}
	cr := api.Crash{Instance: in.id, Release: in.release, Exit: exitWords(e), At: e.At}
	if len(logs) == 1 && strings.HasPrefix(logs[0], "(no logs") {
		logs = nil // tailLogs' note, not the app's output
	}
	cr.Logs, cr.Message = logs, crashMessage(logs)
	// A process that fails at once can be reported before its launch
	// has recorded the start: its life is then counted from the launch.
	started := in.started
	if started.IsZero() {
		started = in.launched
	}
	if e.At.After(started) {
		cr.UptimeSeconds = e.At.Sub(started).Seconds()
	}
	reason := fmt.Sprintf("%s after %s", exitReason(e), api.RoundUptime(time.Duration(cr.UptimeSeconds*float64(time.Second))))
	if cr.Message != "" {
		reason += ": " + cr.Message
	}
	c.endLocked(in, api.Failed, reason)
	cr.InARow = c.backoff[in.release].Failures
	cr.Message, cr.Logs = c.env.Redact(cr.Message), redactLines(c.env, cr.Logs)
	if c.crashes == nil {
		c.crashes, c.crashShown = map[int]api.Crash{}, map[int]string{}
	}
	c.crashes[in.release] = cr
	// The console gets the log lines once per new reason, not per crash
	// of a loop; each crash is still one log line with its reason.
	sig := cr.Exit + "\x00" + cr.Message
	show := c.crashShown[in.release] != sig
	c.crashShown[in.release] = sig
	c.mu.Unlock()
	c.poke()
	if show {
		c.console(cr)
	}
}

// lostLocked records that the host lost in (Exit.Reason): it failed, with
// the host's reason, and is replaced at once. It is no crash of its
// release: the release's crash-loop backoff and crash report are left
// alone.
func (c *Controller) lostLocked(in *instance, reason string) {
	c.setStateLocked(in, api.Failed, reason)
	if in.cancel != nil {
		in.cancel()
	}
	delete(c.instances, in.id)
	delete(c.rates, in.id)
}

func exitReason(e Exit) string {
	if e.Signal != "" {
		return "process killed by " + e.Signal
	}
	return fmt.Sprintf("process exited with status %d", e.Code)
}

// shutdown drains and stops every instance left after the reconcile loop
// and its workers have ended.
func (c *Controller) shutdown() {
	c.mu.Lock()
	var left []*instance
	for _, in := range c.instances {
		in.cancel()
		c.setStateLocked(in, api.Draining, "shoal is shutting down")
		left = append(left, in)
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, in := range left {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.retire(in, "shoal shut down")
		}()
	}
	wg.Wait()
}

// sampleRates computes each instance's requests per second from the
// pool's request counters, once a second, until ctx ends.
func (c *Controller) sampleRates(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st := c.o.Pool.Status()
		now := c.now()
		c.mu.Lock()
		byAddr := map[string]*instance{}
		for _, in := range c.instances {
			if in.addr != "" {
				byAddr[in.addr] = in
			}
		}
		for _, ts := range st.Targets {
			in := byAddr[ts.Addr]
			if in == nil {
				continue
			}
			r := c.rates[in.id]
			if !r.at.IsZero() && now.After(r.at) && ts.Requests >= r.count {
				r.perSec = float64(ts.Requests-r.count) / now.Sub(r.at).Seconds()
			}
			r.count, r.at = ts.Requests, now
			c.rates[in.id] = r
		}
		c.mu.Unlock()
	}
}

// rate is the last requests-per-second sample of one instance.
type rate struct {
	count  int64
	at     time.Time
	perSec float64
}
