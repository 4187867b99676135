package rollout

import (
	"errors"
	"fmt"
	"time"
)

// Policy defaults.
const (
	// DefaultMaxSurge is the surge when the operator sets none: a quarter
	// of the group rounded up, and at least one instance, so that the
	// default never takes capacity out of service.
	DefaultMaxSurge = 25 // percent

	// DefaultBatchTimeout is how long a new instance may take to come
	// into service before the rollout fails, when the health grace is not
	// longer (see Policy.BatchTimeout).
	DefaultBatchTimeout = 5 * time.Minute

	// DefaultDrainTimeout is the drain deadline the actuator gives each
	// old instance (the balancer's default drain time).
	DefaultDrainTimeout = 30 * time.Second

	// DefaultMaxFailures is how many crashes of the new release fail the
	// rollout: one crash can be bad luck, three is a crash loop.
	DefaultMaxFailures = 3
)

// Policy is the deploy policy of a group: how fast a rollout goes and when
// it gives up. The zero value is the default policy, which never reduces
// serving capacity. Fields mean what they say; zero means "default" only
// where a field's comment says so.
type Policy struct {
	// MaxSurge is how many instances may run beyond the desired count
	// during a rollout, counting draining ones (a draining instance still
	// holds memory and a port on its host). A percentage is of the
	// desired count, rounded up. Unset: 25%, at least 1.
	MaxSurge Quantity `json:"max_surge,omitzero"`

	// MaxUnavailable is how many instances below the desired count may be
	// out of service during a rollout. A percentage is rounded down.
	// Unset: 0, launch before terminate. MaxSurge and MaxUnavailable may
	// not both be zero: nothing could move. If both resolve to zero for
	// a small group (percentages rounding down), MaxUnavailable becomes 1,
	// as in a Kubernetes Deployment.
	MaxUnavailable Quantity `json:"max_unavailable,omitzero"`

	// BatchTimeout is how long each new instance has to come into service
	// (from when the rollout first sees it, or from when it turned
	// unhealthy) before the rollout fails and rolls back. It must be
	// longer than HealthGrace: the controller already fails an instance
	// that is not healthy at the end of its grace, and a slow-booting app
	// (Meteor takes tens of seconds) must get all of its grace. Zero
	// means max(5m, 2 x HealthGrace).
	BatchTimeout time.Duration `json:"batch_timeout,omitzero"`

	// HealthGrace is the boot grace of the group's health checks, given
	// so that BatchTimeout can be checked and defaulted against it. The
	// rollout does not probe anything itself. Zero means no grace.
	HealthGrace time.Duration `json:"health_grace,omitzero"`

	// DrainTimeout is the deadline the actuator gives each drain before
	// it stops the instance (in-flight requests and WebSockets are closed
	// then). The rollout carries it for the actuator and names it in its
	// progress; it waits for drained instances to stop. Zero means 30s.
	DrainTimeout time.Duration `json:"drain_timeout,omitzero"`

	// MaxFailures is how many crashes of instances of the release being
	// rolled to fail the rollout: an instance that fails, ends without
	// being drained, or restarts in place. Each crash before that is
	// replaced by a new launch. Zero means 3.
	MaxFailures int `json:"max_failures,omitzero"`
}

// Validate reports every problem of p at once, joined.
func (p Policy) Validate() error {
	var errs []error
	if err := p.MaxSurge.validate(); err != nil {
		errs = append(errs, fmt.Errorf("max_surge: %w", err))
	}
	if err := p.MaxUnavailable.validate(); err != nil {
		errs = append(errs, fmt.Errorf("max_unavailable: %w", err))
	}
	if !p.MaxSurge.IsZero() && p.MaxSurge.n == 0 && p.MaxUnavailable.n == 0 {
		errs = append(errs, errors.New("max_surge and max_unavailable are both zero: a rollout could neither launch nor stop an instance"))
	}
	if p.HealthGrace < 0 {
		errs = append(errs, fmt.Errorf("health_grace: %s is negative", p.HealthGrace))
	}
	switch {
	case p.BatchTimeout < 0:
		errs = append(errs, fmt.Errorf("batch_timeout: %s is negative", p.BatchTimeout))
	case p.BatchTimeout > 0 && p.BatchTimeout <= p.HealthGrace:
		errs = append(errs, fmt.Errorf("batch_timeout: %s must be longer than the health grace %s, or a slow-booting instance is failed before its grace ends",
			p.BatchTimeout, p.HealthGrace))
	}
	if p.DrainTimeout < 0 {
		errs = append(errs, fmt.Errorf("drain_timeout: %s is negative", p.DrainTimeout))
	}
	if p.MaxFailures < 0 {
		errs = append(errs, fmt.Errorf("max_failures: %d is negative", p.MaxFailures))
	}
	return errors.Join(errs...)
}

// WithDefaults returns p with every defaulted duration and count filled
// in. MaxSurge and MaxUnavailable stay as they are (their defaults depend
// on the desired count; see [Policy.Resolve]).
func (p Policy) WithDefaults() Policy {
	if p.BatchTimeout == 0 {
		p.BatchTimeout = max(DefaultBatchTimeout, 2*p.HealthGrace)
	}
	if p.DrainTimeout == 0 {
		p.DrainTimeout = DefaultDrainTimeout
	}
	if p.MaxFailures == 0 {
		p.MaxFailures = DefaultMaxFailures
	}
	return p
}

// Resolve returns the surge and unavailability of p for a group of
// desired instances, in instances. At least one of them is positive. p
// must be valid; desired is clamped to [0, 100000].
func (p Policy) Resolve(desired int) (surge, unavailable int) {
	desired = min(max(desired, 0), maxQuantity)
	if p.MaxSurge.IsZero() {
		surge = max(1, Percent(DefaultMaxSurge).of(desired, true))
	} else {
		surge = p.MaxSurge.of(desired, true)
	}
	unavailable = p.MaxUnavailable.of(desired, false)
	if surge == 0 && unavailable == 0 {
		unavailable = 1
	}
	return surge, unavailable
}
