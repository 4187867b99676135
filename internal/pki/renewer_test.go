package pki

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestRenewerRenewsAtTwoThirdsAndBacksOff drives a Renewer with the fake
// clock: it renews at two thirds of the lifetime, retries with a doubling
// backoff once the server refuses (the node was removed), and ends when
// the certificate expires.
func TestRenewerRenewsAtTwoThirdsAndBacksOff(t *testing.T) {
	f := newFleet(t)
	n, _ := f.join(t, "web-1", api.RoleAgent)
	r := &Renewer{Node: n, ServerURLs: []string{f.url}, MinBackoff: time.Second, MaxBackoff: 4 * time.Second, after: f.clock.After}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	// waitFor waits until the Renewer waits for exactly the deadline at.
	waitFor := func(at time.Time) {
		t.Helper()
		testenv.Eventually(t, 30*time.Second, func() error {
			if w := f.clock.waiting(); !slices.Equal(w, []time.Time{at}) {
				return fmt.Errorf("the renewer waits for %v, want %v", w, at)
			}
			return nil
		})
	}
	first := n.Certificate()
	due := first.NotBefore.Add(first.NotAfter.Sub(first.NotBefore) * 2 / 3)
	waitFor(due)
	f.clock.Set(due)
	testenv.Eventually(t, 30*time.Second, func() error {
		if n.Certificate().Equal(first) {
			return errors.New("not renewed yet")
		}
		return nil
	})
	second := n.Certificate()
	if !second.NotAfter.Equal(due.Add(DefaultNodeTTL)) {
		t.Fatalf("renewed certificate expires %s, want %s", second.NotAfter, due.Add(DefaultNodeTTL))
	}
	due = second.NotBefore.Add(second.NotAfter.Sub(second.NotBefore) * 2 / 3)
	waitFor(due)

	f.nodes.Remove("web-1")
	f.clock.Set(due)
	at := due
	for _, backoff := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		at = at.Add(backoff)
		waitFor(at)
		f.clock.Set(at)
	}
	if !n.Certificate().Equal(second) {
		t.Fatal("a refused renewal changed the certificate")
	}
	f.clock.Set(second.NotAfter)
	select {
	case err := <-done:
		if !errors.Is(err, ErrCertificateExpired) {
			t.Fatalf("Run = %v, want ErrCertificateExpired", err)
		}
	case <-testenv.Context(t, 30*time.Second).Done():
		t.Fatal("the renewer did not stop at the certificate's expiry")
	}
}

func TestRenewerStopsWithItsContext(t *testing.T) {
	f := newFleet(t)
	n, _ := f.join(t, "web-1", api.RoleAgent)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Renewer{Node: n, ServerURLs: []string{f.url}, after: f.clock.After}).Run(ctx) }()
	testenv.Eventually(t, 30*time.Second, func() error {
		if len(f.clock.waiting()) != 1 {
			return errors.New("the renewer is not waiting yet")
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	// Already expired: Run says so at once.
	f.clock.Set(n.Certificate().NotAfter)
	if err := (&Renewer{Node: n, ServerURLs: []string{f.url}, after: f.clock.After}).Run(context.Background()); !errors.Is(err, ErrCertificateExpired) {
		t.Fatalf("Run with an expired certificate = %v", err)
	}
}
