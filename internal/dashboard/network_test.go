package dashboard

import (
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/timeseries"
)

func TestNetworkSplit(t *testing.T) {
	ms := time.Millisecond
	if s := splitOf(timeseries.SlowRequest{Total: 100 * ms, TTFB: 90 * ms}); s != nil {
		t.Errorf("unknown round trip: %+v, want nil", s)
	}
	// A far client: 200 ms round trip, the app answers in 50 ms and the
	// answer takes 150 ms to go out.
	s := splitOf(timeseries.SlowRequest{Total: 200 * ms, Queue: 0, TTFB: 50 * ms, Transfer: 150 * ms, RTT: 200 * ms})
	want := networkSplit{RTT: 200 * ms, Seen: 400 * ms, Net: 350 * ms, App: 50 * ms, NetPct: 88, AppPct: 13}
	if s == nil || *s != want {
		t.Errorf("split %+v, want %+v", s, want)
	}
}
