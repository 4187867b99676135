package hostpool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/fleet"
)

// EventType is the api.Event type of a pool's decisions and failures
// (stored with the fleet's events, api.FleetEventsApp).
const EventType = "hostpool"

// Defaults of Options.
const (
	DefaultEvery      = 5 * time.Second
	DefaultMaxBackoff = time.Minute
	firstBackoff      = time.Second
)

// Fleet is what a Pool needs of the fleet's registry (*fleet.Fleet).
type Fleet interface {
	Status() []api.HostStatus
	Unplaced() []fleet.Unplaced
	Drain(name string) error
	Remove(name string) error
}

// Options configures a Pool.
type Options struct {
	// Name is the pool's name: its tag and its machines' names. Required.
	Name string
	// Provider makes and destroys the machines. Required.
	Provider Provider
	Limits   Limits
	// Size and Image of new machines (provider slugs; Image may be a
	// snapshot's id).
	Size, Image string
	// ServerURL is the fleet URL the agents join (server.yaml fleet.url).
	ServerURL string
	// Fleet is the registry the hosts join. Required.
	Fleet Fleet
	// NewToken makes a one-time join token for an agent, valid for ttl.
	// Required.
	NewToken func(ttl time.Duration) (string, error)
	// TakenNames returns every host name the fleet's trust knows (joined
	// or stored), so that a new machine's name is never one a node had:
	// a removed node's name stays taken.
	TakenNames func() []string
	// OnEvent receives every decision and failure (Type EventType); it
	// must not block. Nil drops them.
	OnEvent func(api.Event)
	// Logger; nil discards.
	Logger *slog.Logger
	// Every is the period of a pass; zero means DefaultEvery.
	Every time.Duration
	// MaxBackoff caps the wait after failed calls of the provider's API
	// (from 1 s, doubling); zero means DefaultMaxBackoff.
	MaxBackoff time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Pool keeps one pool's machines between its limits: Run. It is used by
// one goroutine (Run's).
type Pool struct {
	o   Options
	log *slog.Logger
	// emptySince and lostSince are when each host was first seen empty
	// (ready, no instance) and unreachable in this run.
	emptySince, lostSince map[string]time.Time
}

// New checks o.
func New(o Options) (*Pool, error) {
	switch {
	case o.Name == "":
		return nil, errors.New("host pool: Name is required")
	case o.Provider == nil || o.Fleet == nil || o.NewToken == nil:
		return nil, fmt.Errorf("host pool %s: Provider, Fleet and NewToken are required", o.Name)
	case o.Limits.Max < o.Limits.Min || o.Limits.Max < 1:
		return nil, fmt.Errorf("host pool %s: max %d must be at least 1 and min %d", o.Name, o.Limits.Max, o.Limits.Min)
	case len(o.Limits.Regions) == 0:
		return nil, fmt.Errorf("host pool %s: no region", o.Name)
	}
	if o.Every <= 0 {
		o.Every = DefaultEvery
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	p := &Pool{o: o, log: o.Logger, emptySince: map[string]time.Time{}, lostSince: map[string]time.Time{}}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("pool", o.Name)
	return p, nil
}

// Run passes every Every until ctx ends, then returns nil. A pass that
// fails (the provider's API failed or limited the rate) is an event with
// the reason and is tried again after a backoff from 1 s doubling to
// MaxBackoff, or after the provider's Retry-After when it is longer.
func (p *Pool) Run(ctx context.Context) error {
	backoff := time.Duration(0)
	attempt := 0
	for {
		wait := p.o.Every
		if err := p.Pass(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			attempt++
			backoff = min(max(backoff*2, firstBackoff), p.o.MaxBackoff)
			wait = backoff
			var ae *APIError
			if errors.As(err, &ae) && ae.RetryAfter > wait {
				wait = min(ae.RetryAfter, p.o.MaxBackoff)
			}
			p.event(fmt.Sprintf("pool %s: %s API call failed (attempt %d): %v; retrying in %s", p.o.Name, p.o.Provider.Name(), attempt, err, wait), slog.LevelWarn)
		} else {
			if attempt > 0 {
				p.event(fmt.Sprintf("pool %s: %s API answers again after %d failed attempts", p.o.Name, p.o.Provider.Name(), attempt), slog.LevelInfo)
			}
			attempt, backoff = 0, 0
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// Pass lists the pool's machines, decides (Decide) and acts: it destroys,
// drains and creates. It returns the first failed call of the provider.
func (p *Pool) Pass(ctx context.Context) error {
	machines, err := p.o.Provider.List(ctx, Tag(p.o.Name))
	if err != nil {
		return err
	}
	in := p.observe(machines)
	d := Decide(in)
	if d.Reason == "" {
		return nil
	}
	p.event(d.Reason, slog.LevelInfo)
	for _, x := range d.Destroy {
		// Out of the fleet first: a host that still has an instance is
		// kept (and tried again next pass). Once removed, its certificate
		// opens nothing, so if the destroy fails the machine is an
		// unjoined one, destroyed after JoinDeadline.
		if err := p.o.Fleet.Remove(x.Name); err != nil && !errors.Is(err, fleet.ErrUnknownHost) {
			p.event(fmt.Sprintf("pool %s: %s kept: %v", p.o.Name, x.Name, err), slog.LevelWarn)
			continue
		}
		if err := p.o.Provider.Destroy(ctx, x.ID); err != nil {
			return err
		}
		p.event(fmt.Sprintf("pool %s: destroyed %s (droplet %s): %s", p.o.Name, x.Name, x.ID, x.Reason), slog.LevelInfo)
		delete(p.emptySince, x.Name)
		delete(p.lostSince, x.Name)
	}
	for _, name := range d.Drain {
		if err := p.o.Fleet.Drain(name); err != nil {
			p.event(fmt.Sprintf("pool %s: drain %s: %v", p.o.Name, name, err), slog.LevelWarn)
		}
	}
	for _, c := range d.Create {
		if err := p.create(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// create makes one machine with a fresh join token in its user-data.
func (p *Pool) create(ctx context.Context, c NewMachine) error {
	ttl := p.o.Limits.JoinDeadline
	if ttl <= 0 {
		ttl = time.Hour
	}
	tok, err := p.o.NewToken(ttl)
	if err != nil {
		return fmt.Errorf("join token for %s: %w", c.Name, err)
	}
	ud, err := UserData(UserDataSpec{Server: p.o.ServerURL, Token: tok, Name: c.Name, Region: c.Region})
	if err != nil {
		return err
	}
	m, err := p.o.Provider.Create(ctx, CreateSpec{Name: c.Name, Region: c.Region, Size: p.o.Size, Image: p.o.Image,
		UserData: ud, Tags: []string{Tag(p.o.Name)}})
	if err != nil {
		return err
	}
	p.event(fmt.Sprintf("pool %s: created %s (droplet %s) in %s, size %s, image %s; waiting for it to join", p.o.Name, m.Name, m.ID, c.Region, p.o.Size, p.o.Image), slog.LevelInfo)
	return nil
}

// observe joins the provider's list with the fleet's view of each host.
func (p *Pool) observe(machines []Machine) Input {
	now := p.o.Now()
	hosts := map[string]api.HostStatus{}
	next := 1
	for _, h := range p.o.Fleet.Status() {
		hosts[h.Name] = h
	}
	taken := []string(nil)
	if p.o.TakenNames != nil {
		taken = p.o.TakenNames()
	}
	for _, n := range taken {
		if s, ok := SeqOf(p.o.Name, n); ok {
			next = max(next, s+1)
		}
	}
	in := Input{Pool: p.o.Name, Now: now, Limits: p.o.Limits}
	seen := map[string]bool{}
	for _, m := range machines {
		if s, ok := SeqOf(p.o.Name, m.Name); ok {
			next = max(next, s+1)
		}
		seen[m.Name] = true
		o := Observed{Machine: m}
		if h, ok := hosts[m.Name]; ok {
			o.Joined, o.State, o.Instances, o.CPU, o.Memory = true, h.State, h.Instances, h.CPU, h.MemoryBytes
		}
		o.EmptyFor = since(p.emptySince, m.Name, now, o.Joined && o.State == api.HostReady && o.Instances == 0)
		o.UnreachableFor = since(p.lostSince, m.Name, now, o.Joined && o.State == api.HostUnreachable)
		in.Machines = append(in.Machines, o)
	}
	for name := range p.emptySince {
		if !seen[name] {
			delete(p.emptySince, name)
		}
	}
	for name := range p.lostSince {
		if !seen[name] {
			delete(p.lostSince, name)
		}
	}
	for _, u := range p.o.Fleet.Unplaced() {
		in.Pending = append(in.Pending, Demand{App: u.App, CPU: u.CPU, Memory: u.Memory, Retry: !u.Current})
	}
	in.NextSeq = next
	return in
}

// since returns how long cond has held for name, keeping the start in m.
func since(m map[string]time.Time, name string, now time.Time, cond bool) time.Duration {
	if !cond {
		delete(m, name)
		return 0
	}
	t, ok := m[name]
	if !ok {
		m[name] = now
		return 0
	}
	return now.Sub(t)
}

func (p *Pool) event(reason string, level slog.Level) {
	p.log.Log(context.Background(), level, "host pool", "reason", reason)
	if p.o.OnEvent != nil {
		p.o.OnEvent(api.Event{Type: EventType, Time: p.o.Now(), Reason: reason})
	}
}
