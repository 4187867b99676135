package timeseries

import (
	"testing"
	"time"
)

func TestSlowTopKOverWindow(t *testing.T) {
	s := NewSlow(SlowOptions{K: 3, Window: 2 * time.Minute})
	offer := func(at time.Duration, total time.Duration, id string) {
		s.Offer(SlowRequest{Time: t0.Add(at), RequestID: id, Total: total})
	}
	offer(0, 900*time.Millisecond, "old-slowest")
	offer(time.Minute, 100*time.Millisecond, "a")
	offer(time.Minute+time.Second, 300*time.Millisecond, "b")
	offer(time.Minute+2*time.Second, 200*time.Millisecond, "c")
	offer(time.Minute+3*time.Second, 50*time.Millisecond, "too-fast") // heap full, rejected
	offer(time.Minute+4*time.Second, 400*time.Millisecond, "d")       // evicts a

	got := s.Top(t0.Add(time.Minute+30*time.Second), 0)
	ids := []string{}
	for _, r := range got {
		ids = append(ids, r.RequestID)
	}
	want := []string{"old-slowest", "d", "b"}
	if len(ids) != 3 || ids[0] != want[0] || ids[1] != want[1] || ids[2] != want[2] {
		t.Fatalf("top = %v, want %v", ids, want)
	}
	// Two minutes later the first minute has left the window.
	got = s.Top(t0.Add(2*time.Minute+time.Second), 2)
	if len(got) != 2 || got[0].RequestID != "d" || got[1].RequestID != "b" {
		t.Fatalf("top after the window moved = %+v", got)
	}
	// A request older than what its ring slot holds is dropped.
	offer(-time.Minute, time.Hour, "ancient")
	for _, r := range s.Top(t0.Add(2*time.Minute), 0) {
		if r.RequestID == "ancient" {
			t.Fatal("a request older than the window was kept")
		}
	}
}

func BenchmarkSlowOffer(b *testing.B) {
	s := NewSlow(SlowOptions{})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s.Offer(SlowRequest{Time: t0.Add(time.Duration(i) * time.Millisecond), Path: "/x", Total: time.Duration(i%1000) * time.Millisecond})
	}
}
