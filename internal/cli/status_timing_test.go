package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/client"
)

func TestPrintStatusTiming(t *testing.T) {
	st := client.Status{App: "web", Host: "local", Release: 1, Desired: 1, Timing: []api.TimingStatus{
		{Kind: "route", Name: "web", RequestTiming: api.RequestTiming{Requests: 120, AppSamples: 118, AppP50MS: 4.25, AppP95MS: 31.5, RTTSamples: 120, RTTP50MS: 0.212, RTTP95MS: 182}},
		{Kind: "listener", Name: "https", RequestTiming: api.RequestTiming{Requests: 3}},
	}}
	var b strings.Builder
	printStatus(&b, st, time.Now())
	out := b.String()
	for _, want := range []string{
		"client round trip",
		"APP p50", "RTT p95",
		"route web", "120", "4.25 ms", "31.5 ms", "0.212 ms", "182 ms",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	// A listener with no figures shows dashes, not zeros.
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "listener https") && (strings.Contains(l, "0 ms") || strings.Count(l, "-") != 4) {
			t.Errorf("listener line %q: want dashes", l)
		}
	}
	// Without timing (no balancer, no request yet): no table.
	b.Reset()
	st.Timing = nil
	printStatus(&b, st, time.Now())
	if strings.Contains(b.String(), "RTT p50") {
		t.Errorf("timing table without timing:\n%s", b.String())
	}
}
