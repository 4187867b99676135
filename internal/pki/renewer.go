package pki

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Renewal backoff defaults.
const (
	DefaultMinBackoff = time.Second
	DefaultMaxBackoff = 5 * time.Minute
)

// ErrCertificateExpired ends a Renewer: the node's certificate expired
// before a renewal succeeded, and only a new join can replace it.
var ErrCertificateExpired = errors.New("node certificate expired")

// renewAt is when a certificate is due for renewal: two thirds into its
// lifetime.
func renewAt(c *x509.Certificate) time.Time {
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) * 2 / 3)
}

// Renewer keeps a node's certificate fresh: it renews it (Node.Renew) at
// two thirds of its lifetime and, when that fails, retries with a backoff
// doubling from MinBackoff to MaxBackoff, until the certificate expires.
// Two attempts are never closer than MinBackoff, whatever the lifetime.
//
//	wait until renewAt --renewed--> wait until the new renewAt
//	        |  failed
//	        v
//	retry after MinBackoff, 2x, ... MaxBackoff --expired--> Run returns ErrCertificateExpired
type Renewer struct {
	Node *Node
	// ServerURLs are the fleet URLs of the server, or of every server of
	// a cluster (any of them renews: a follower redirects to the
	// leader); an attempt tries each in order until one renews. At least
	// one.
	ServerURLs []string
	// MinBackoff and MaxBackoff bound the wait between failed attempts;
	// zero means DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives a line per renewal and per failure; nil discards.
	Logger *slog.Logger

	// after replaces time.After in tests, together with the node's clock.
	after func(time.Duration) <-chan time.Time
}

// Run renews until ctx ends (it then returns nil) or the certificate
// expires (an error wrapping ErrCertificateExpired, at once if it has
// already). It blocks; run one per node.
func (r *Renewer) Run(ctx context.Context) error {
	minB, maxB := r.MinBackoff, r.MaxBackoff
	if minB <= 0 {
		minB = DefaultMinBackoff
	}
	if maxB < minB {
		maxB = max(DefaultMaxBackoff, minB)
	}
	after := r.after
	if after == nil {
		after = time.After
	}
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	name := r.Node.Identity().Name
	var retry time.Duration // 0 while renewals succeed
	for {
		leaf := r.Node.Certificate()
		now := r.Node.now()
		if !now.Before(leaf.NotAfter) {
			return fmt.Errorf("%w at %s (node %s): join again with a new token", ErrCertificateExpired,
				leaf.NotAfter.UTC().Format(time.RFC3339), name)
		}
		wait := retry
		if retry == 0 {
			wait = max(renewAt(leaf).Sub(now), minB)
		}
		wait = min(wait, leaf.NotAfter.Sub(now))
		select {
		case <-ctx.Done():
			return nil
		case <-after(wait):
		}
		if !r.Node.now().Before(leaf.NotAfter) {
			continue // reported at the top
		}
		err := r.renew(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			retry = min(max(2*retry, minB), maxB)
			log.Warn("node certificate renewal failed; retrying", "node", name, "retry_in", retry,
				"expires", leaf.NotAfter.UTC().Format(time.RFC3339), "error", err)
			continue
		}
		retry = 0
		log.Info("node certificate renewed", "node", name, "expires", r.Node.Certificate().NotAfter.UTC().Format(time.RFC3339))
	}
}

// renew renews through the first of ServerURLs that answers; the errors
// of all when none did.
func (r *Renewer) renew(ctx context.Context) error {
	var errs []error
	for _, u := range r.ServerURLs {
		err := r.Node.Renew(ctx, u)
		if err == nil || ctx.Err() != nil {
			return err
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return errors.New("renew: no server URL")
	}
	return errors.Join(errs...)
}
