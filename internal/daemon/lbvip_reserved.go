package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/hostpool"
)

// A reserved IP (lb.yaml's vip.reserved_ip; issue 17): the cloud's
// alternative to an address on the interface. keepalived still elects the
// active node among the balancers; the node that becomes MASTER points the
// provider's reserved IP at its own machine through the provider's API
// (hostpool.Provider.AssignReservedIP). A call that fails is tried again
// with backoff while the node stays MASTER, each attempt logged with its
// reason. The address keepalived adds to the interface (vip.address) is
// then the node's private anchor for the reserved IP, or unused.

// Bounds of the retries of an assignment: from reservedFirstBackoff,
// doubling, at most reservedMaxBackoff (or the provider's Retry-After),
// each call at most reservedCallTimeout.
const (
	reservedFirstBackoff = time.Second
	reservedMaxBackoff   = 30 * time.Second
	reservedCallTimeout  = 30 * time.Second
)

// reservedIPAssigner is the part of a hostpool.Provider a reserved IP uses.
type reservedIPAssigner interface {
	AssignReservedIP(ctx context.Context, ip, id string) error
}

// reservedIP keeps the provider's reserved IP on this node's machine
// while keepalived says the node is MASTER.
type reservedIP struct {
	cfg     config.LBReservedIP
	prov    reservedIPAssigner
	machine string // this node's machine (droplet) id
	log     *slog.Logger
	kick    chan struct{} // a state report arrived; buffered, one
}

// openReservedIP loads the provider's token and finds this node's
// machine (vip.reserved_ip.droplet_id, else the metadata service).
func openReservedIP(ctx context.Context, cfg config.LBReservedIP, log *slog.Logger) (*reservedIP, error) {
	tok, err := hostpool.LoadToken(cfg.TokenFile, hostpool.TokenEnv)
	if err != nil {
		return nil, fmt.Errorf("vip.reserved_ip: %w", err)
	}
	prov, err := hostpool.NewDigitalOcean(hostpool.DigitalOceanOptions{Token: tok, BaseURL: cfg.APIURL})
	if err != nil {
		return nil, fmt.Errorf("vip.reserved_ip: %w", err)
	}
	id := cfg.MachineID
	if id == "" {
		mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		id, err = hostpool.DropletID(mctx, "")
		cancel()
		if err != nil {
			return nil, fmt.Errorf("vip.reserved_ip: this machine's droplet id (set droplet_id when not on a droplet): %w", err)
		}
	}
	return &reservedIP{cfg: cfg, prov: prov, machine: id, log: log, kick: make(chan struct{}, 1)}, nil
}

// changed tells run that keepalived reported a state; it never blocks.
func (r *reservedIP) changed() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// run assigns the reserved IP each time the node becomes MASTER (state
// reads keepalived's last state and its report count) until ctx ends.
func (r *reservedIP) run(ctx context.Context, state func() (string, uint64)) {
	var done uint64 // the report count of the MASTER state assigned for; 0: none
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		}
		s, gen := state()
		if s != "MASTER" || gen == done {
			continue
		}
		if r.assign(ctx, state, gen) {
			done = gen
		}
	}
}

// assign calls the provider until the assignment succeeds (true), the
// node stops being MASTER of report gen, or ctx ends.
func (r *reservedIP) assign(ctx context.Context, state func() (string, uint64), gen uint64) bool {
	wait := reservedFirstBackoff
	for attempt := 1; ; attempt++ {
		start := time.Now()
		cctx, cancel := context.WithTimeout(ctx, reservedCallTimeout)
		err := r.prov.AssignReservedIP(cctx, r.cfg.Address.String(), r.machine)
		cancel()
		if err == nil {
			r.log.Info("vip: reserved ip assigned to this node", "reserved_ip", r.cfg.Address.String(), "provider", r.cfg.Provider,
				"droplet", r.machine, "attempt", attempt, "took", time.Since(start).Round(time.Millisecond).String())
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		next := wait
		if ra := retryAfter(err); ra > next {
			next = ra
		}
		r.log.Warn("vip: assigning the reserved ip failed; trying again", "reserved_ip", r.cfg.Address.String(), "provider", r.cfg.Provider,
			"droplet", r.machine, "attempt", attempt, "error", err, "retry_in", next.String())
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		if s, g := state(); s != "MASTER" || g != gen {
			r.log.Info("vip: reserved ip not assigned: this node is no longer MASTER", "reserved_ip", r.cfg.Address.String(), "state", s)
			return false
		}
		wait = min(2*wait, reservedMaxBackoff)
	}
}

// retryAfter is the wait a provider asked for in err (a 429's), or zero.
func retryAfter(err error) time.Duration {
	var ae *hostpool.APIError
	if errors.As(err, &ae) {
		return ae.RetryAfter
	}
	return 0
}
