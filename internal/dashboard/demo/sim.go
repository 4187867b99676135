package demo

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/internal/dashboard"
	"github.com/shoal-dev/shoal/internal/timeseries"
)

// Step advances the simulation by one tick: instance lifecycles, deploy
// batches, replacements, and a tick's worth of traffic.
func (s *Source) Step() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	for _, g := range s.groups {
		s.stepInstances(g, now)
		if g.deploy != nil && g.deploy.Active {
			s.stepDeploy(g, now)
		} else {
			s.reconcile(g, now)
		}
	}
	s.traffic(now, s.opts.Tick, true)
}

// stepInstances moves each instance along its lifecycle.
func (s *Source) stepInstances(g *group, now time.Time) {
	kept := g.insts[:0]
	for _, in := range g.insts {
		in.ticks++
		switch in.State {
		case dashboard.StatePending:
			in.State, in.Health, in.ticks = dashboard.StateStarting, "boot grace: waiting for GET /healthz", 0
			s.event(now, g.App, in.ID, dashboard.KindState, "pending -> starting: process started")
			s.logLine(in.ID, now, "app: listening on "+in.Addr)
		case dashboard.StateStarting:
			if in.ticks >= s.opts.StartTicks {
				in.State, in.Health, in.ticks, in.started = dashboard.StateInService, "passing", 0, now
				s.event(now, g.App, in.ID, dashboard.KindHealth, "GET /healthz passed 2 checks: added to the balancer")
				s.event(now, g.App, in.ID, dashboard.KindState, "starting -> in_service")
			}
		case dashboard.StateDraining:
			if in.ticks >= 2 {
				in.State, in.Health, in.ticks, in.RPS = dashboard.StateStopped, "stopped", 0, 0
				s.event(now, g.App, in.ID, dashboard.KindState, "draining -> stopped: no requests in flight")
				s.logLine(in.ID, now, "shoal: stopped with SIGTERM after draining")
			}
		case dashboard.StateFailed:
			if in.ticks >= s.opts.StartTicks+2 {
				in.State, in.ticks = dashboard.StateStopped, 0
				s.event(now, g.App, in.ID, dashboard.KindState, "failed -> stopped: removed from the balancer")
			}
		case dashboard.StateStopped:
			if in.ticks >= 2 {
				delete(s.logs, in.ID)
				s.series.DeleteGauge(timeseries.InstanceCPU(in.ID))
				s.series.DeleteGauge(timeseries.InstanceRSS(in.ID))
				continue
			}
		}
		kept = append(kept, in)
	}
	g.insts = kept
}

func (s *Source) count(g *group, keep func(*inst) bool) (n int) {
	for _, in := range g.insts {
		if keep(in) {
			n++
		}
	}
	return n
}

func booting(in *inst) bool {
	return in.State == dashboard.StatePending || in.State == dashboard.StateStarting
}

// reconcile keeps Desired instances of the group's release running:
// failed ones are replaced (launch first; the failed one stops later).
func (s *Source) reconcile(g *group, now time.Time) {
	for _, in := range g.insts {
		if in.State == dashboard.StateFailed && in.ticks == 1 {
			nw := s.launch(g, g.Release, now)
			s.event(now, g.App, in.ID, dashboard.KindReplace, fmt.Sprintf("%s failed (process exited): launched %s to replace it", in.ID, nw.ID))
		}
	}
	alive := s.count(g, func(in *inst) bool { return in.State == dashboard.StateInService || booting(in) })
	switch {
	case alive < g.Desired:
		nw := s.launch(g, g.Release, now)
		s.event(now, g.App, nw.ID, dashboard.KindScale, fmt.Sprintf("launched %s: %d running, %d desired", nw.ID, alive, g.Desired))
	case alive > g.Desired:
		for i := len(g.insts) - 1; i >= 0; i-- {
			if in := g.insts[i]; in.State == dashboard.StateInService {
				in.State, in.Health, in.ticks = dashboard.StateDraining, "draining", 0
				s.event(now, g.App, in.ID, dashboard.KindScale, fmt.Sprintf("draining %s: %d running, %d desired", in.ID, alive, g.Desired))
				break
			}
		}
	}
}

// stepDeploy runs one step of a rolling deploy with a surge of one:
// launch one new, wait until it serves, drain one old, repeat.
func (s *Source) stepDeploy(g *group, now time.Time) {
	d := g.deploy
	isNew := func(in *inst) bool { return in.Release == d.To }
	newUp := s.count(g, func(in *inst) bool { return isNew(in) && in.State == dashboard.StateInService })
	newBoot := s.count(g, func(in *inst) bool { return isNew(in) && booting(in) })
	oldUp := s.count(g, func(in *inst) bool { return !isNew(in) && (in.State == dashboard.StateInService || booting(in)) })
	d.Done, d.Total = newUp, g.Desired
	switch {
	case oldUp == 0 && newUp >= g.Desired:
		d.Active, d.Phase = false, "done"
		for i := range g.releases {
			switch r := &g.releases[i]; {
			case r.Version == d.To:
				r.Status = "current"
			case r.Status == "current" || r.Status == "deploying":
				r.Status = "previous"
			}
		}
		verb := "deploy"
		if d.Rollback {
			verb = "rollback"
		}
		s.event(now, g.App, "", dashboard.KindDeploy, fmt.Sprintf("%s v%d -> v%d done in %s", verb, d.From, d.To, now.Sub(d.Started).Round(time.Second)))
	case newUp+oldUp > g.Desired && oldUp > 0:
		for _, in := range g.insts {
			if !isNew(in) && in.State == dashboard.StateInService {
				in.State, in.Health, in.ticks = dashboard.StateDraining, "draining", 0
				d.Phase = "draining " + in.ID
				s.event(now, g.App, in.ID, dashboard.KindDeploy, fmt.Sprintf("v%d -> v%d: draining %s (replaced)", d.From, d.To, in.ID))
				break
			}
		}
	case newBoot == 0 && newUp < g.Desired:
		nw := s.launch(g, d.To, now)
		d.Phase = "launching " + nw.ID
		s.event(now, g.App, nw.ID, dashboard.KindDeploy, fmt.Sprintf("v%d -> v%d: launched %s (%d of %d)", d.From, d.To, nw.ID, newUp+1, g.Desired))
	case newBoot > 0:
		d.Phase = "waiting for health checks"
	}
}

// route is one simulated route with its median latency.
type route struct {
	name, method, path string
	weight             float64
	median             time.Duration
}

var routes = []route{
	{"GET /", "GET", "/", 30, 38 * time.Millisecond},
	{"GET /api/items", "GET", "/api/items", 25, 72 * time.Millisecond},
	{"GET /products/{id}", "GET", "/products/", 18, 55 * time.Millisecond},
	{"POST /api/login", "POST", "/api/login", 4, 140 * time.Millisecond},
	{"GET /sockjs/info", "GET", "/sockjs/info", 15, 4 * time.Millisecond},
	{"GET /static/app.js", "GET", "/static/app.js", 6, 20 * time.Millisecond},
	{"GET /reports", "GET", "/reports", 2, 900 * time.Millisecond},
}

// traffic simulates dur of requests ending at now: metrics, slow requests,
// instance figures and access-log lines (when logs is set).
func (s *Source) traffic(now time.Time, dur time.Duration, logs bool) {
	for _, g := range s.groups {
		var up []*inst
		for _, in := range g.insts {
			if in.State == dashboard.StateInService {
				up = append(up, in)
			}
		}
		for _, in := range g.insts {
			in.RPS = 0
		}
		if len(up) == 0 {
			continue
		}
		rate := g.baseRPS * (1 + 0.25*math.Sin(float64(now.Unix())/420))
		n := int(rate*dur.Seconds() + s.rng.Float64())
		per := make([]int, len(up))
		logged := make([]int, len(up))
		for range n {
			k := s.rng.IntN(len(up))
			per[k]++
			at := now.Add(-time.Duration(s.rng.Int64N(int64(dur))))
			req := s.request(g.App, up[k], at, 1)
			s.series.Record(at, g.App, req.Route, req.Status, req.Total)
			s.slow.Offer(req)
			if logs && logged[k] < 3 {
				logged[k]++
				s.logLine(up[k].ID, at, fmt.Sprintf("%s %s %d %s req=%s", req.Method, req.Path, req.Status, fmtMS(req.Total), req.RequestID[:8]))
			}
		}
		for k, in := range up {
			in.RPS = float64(per[k]) / dur.Seconds()
			in.CPU = 0.04 + in.RPS*0.006 + s.rng.Float64()*0.03
			in.RSS = int64(118<<20) + int64(in.RPS*900*1024) + s.rng.Int64N(6<<20)
			s.series.SetGauge(now, timeseries.InstanceCPU(in.ID), in.CPU)
			s.series.SetGauge(now, timeseries.InstanceRSS(in.ID), float64(in.RSS))
		}
	}
}

func fmtMS(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

// request makes one simulated request. slowness > 1 stretches the target's
// time (an incident in the backfill).
func (s *Source) request(app string, in *inst, at time.Time, slowness float64) timeseries.SlowRequest {
	w := s.rng.Float64() * 100
	rt := routes[0]
	for _, r := range routes {
		if w -= r.weight; w < 0 {
			rt = r
			break
		}
	}
	path := rt.path
	if strings.HasSuffix(path, "/") && len(path) > 1 {
		path += fmt.Sprint(1000 + s.rng.IntN(9000))
	}
	ttfb := time.Duration(float64(rt.median) * math.Exp(s.rng.NormFloat64()*0.45) * slowness)
	queue := time.Duration(150+s.rng.IntN(900)) * time.Microsecond
	transfer := time.Duration(50+s.rng.IntN(400)) * time.Microsecond
	// The client's round trip: 8 to 188 ms, from the request's time so
	// that the random sequence (and every other simulated figure) stays
	// as it was.
	rtt := time.Duration(8+at.Nanosecond()%181) * time.Millisecond
	switch p := s.rng.Float64(); {
	case rt.name == "GET /reports" && p < 0.01:
		// The page from the story: the target takes seconds to answer.
		ttfb = time.Duration(6500+s.rng.IntN(1500)) * time.Millisecond
	case rt.name == "GET /static/app.js" && p < 0.01:
		// A 4 MB bundle to a slow phone.
		transfer = time.Duration(2500+s.rng.IntN(3000)) * time.Millisecond
		rtt = 350 * time.Millisecond
	case p < 0.0003:
		// Every target busy: waiting at the balancer.
		queue = time.Duration(1500+s.rng.IntN(2500)) * time.Millisecond
	}
	status := 200
	if rt.method == "POST" {
		status = 201
	}
	if s.rng.Float64() < 0.004 {
		status = []int{500, 502, 503}[s.rng.IntN(3)]
	}
	return timeseries.SlowRequest{
		Time: at, RequestID: fmt.Sprintf("%016x", s.rng.Uint64()), Method: rt.method, Host: app + ".example.com",
		Path: path, Route: rt.name, Group: app, Target: in.Addr, Status: status,
		Total: queue + ttfb + transfer, Queue: queue, TTFB: ttfb, Transfer: transfer, RTT: rtt,
	}
}

// backfill simulates the hour before now and a history of events.
func (s *Source) backfill(now time.Time) {
	start := now.Add(-time.Hour).Truncate(time.Second)
	for _, g := range s.groups {
		up := slices.Clone(g.insts)
		for t := start; t.Before(now.Truncate(time.Second)); t = t.Add(time.Second) {
			ago := now.Sub(t)
			rate := g.baseRPS * (1 + 0.25*math.Sin(float64(t.Unix())/420))
			slowness := 1.0
			if ago > 38*time.Minute && ago < 44*time.Minute {
				rate *= 1.8 // a traffic burst
			}
			if ago > 22*time.Minute && ago < 26*time.Minute {
				slowness = 3.5 // a slow database
			}
			n := int(rate + s.rng.Float64())
			for range n {
				req := s.request(g.App, up[s.rng.IntN(len(up))], t.Add(time.Duration(s.rng.Int64N(int64(time.Second)))), slowness)
				s.series.Record(req.Time, g.App, req.Route, req.Status, req.Total)
				if ago < 15*time.Minute {
					s.slow.Offer(req)
				}
			}
			if t.Unix()%5 == 0 {
				for _, in := range up {
					cpu := 0.04 + rate/float64(len(up))*0.006*slowness + s.rng.Float64()*0.03
					s.series.SetGauge(t, timeseries.InstanceCPU(in.ID), cpu)
					s.series.SetGauge(t, timeseries.InstanceRSS(in.ID), float64(int64(118<<20)+int64(rate/float64(len(up))*900*1024)+s.rng.Int64N(6<<20)))
				}
			}
		}
	}
	at := func(d time.Duration) time.Time { return now.Add(-d) }
	s.events = nil
	for _, g := range s.groups {
		s.event(at(2*time.Hour), g.App, "", dashboard.KindDeploy, "deploy v2 -> v3 started: batches of 1")
		s.event(at(2*time.Hour-40*time.Second), g.App, "", dashboard.KindDeploy, "deploy v2 -> v3 done in 40s")
	}
	s.event(at(44*time.Minute), "web", "", dashboard.KindScale, "desired 3 -> 4: 92 req/s per instance > target 60")
	s.event(at(37*time.Minute), "web", "", dashboard.KindScale, "desired 4 -> 3: 41 req/s per instance < target 60 for 5m")
	s.event(at(25*time.Minute), "api", "api-1", dashboard.KindHealth, "GET /healthz took 2.4s (timeout 2s): 1 of 3 failures")
	s.event(at(24*time.Minute), "api", "api-1", dashboard.KindHealth, "GET /healthz passing again")
	slices.SortFunc(s.events, func(a, b dashboard.Event) int { return a.Time.Compare(b.Time) })
	for i := range s.events {
		s.events[i].Seq = uint64(i + 1)
	}
	s.seq = uint64(len(s.events))
}

// logBuf keeps the last lines of one instance's output.
type logBuf struct {
	lines []string
	first int // absolute number of lines[0]
}

const logKeep = 500

// logLine appends a line to an instance's log and wakes followers; s.mu is
// held.
func (s *Source) logLine(id string, at time.Time, msg string) {
	lb := s.logs[id]
	if lb == nil {
		return
	}
	lb.lines = append(lb.lines, at.UTC().Format("2006-01-02T15:04:05.000Z")+" "+msg)
	if len(lb.lines) > logKeep+100 {
		lb.lines = slices.Delete(lb.lines, 0, 100)
		lb.first += 100
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

// tail returns the last n lines and the absolute number after them.
func (b *logBuf) tail(n int) (string, int) {
	i := max(0, len(b.lines)-n)
	return join(b.lines[i:]), b.first + len(b.lines)
}

// since returns the lines from absolute number next on.
func (b *logBuf) since(next int) (string, int) {
	i := min(max(0, next-b.first), len(b.lines))
	return join(b.lines[i:]), b.first + len(b.lines)
}

func join(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}
