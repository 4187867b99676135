package testenv

import (
	"os/exec"
	"testing"
	"time"
)

// TestLabPartition: Partition cuts h1 off from h2 only (both ways), while
// h3 and the lab still reach it; Heal joins them again; a second Heal and
// a partition from nobody are errors.
func TestLabPartition(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip(err)
	}
	l := NewLab(t, "h1", "h2", "h3")
	h1, h2 := l.Host("h1"), l.Host("h2")
	startListener(t, l, "h1", h1.IP+":7000", "hello from h1")
	startListener(t, l, "h2", h2.IP+":7000", "hello from h2")
	ctx := Context(t, 30*time.Second)
	if err := l.Partition(ctx, "h1"); err == nil {
		t.Fatal("a partition from no address was made")
	}
	if err := l.Partition(ctx, "h1", h2.IP); err != nil {
		t.Fatal(err)
	}
	for _, from := range []string{"", "h3"} {
		if got, err := greet(l, from, h1.IP+":7000"); err != nil || got != "hello from h1" {
			t.Fatalf("from %q to the partitioned h1: %q, %v", from, got, err)
		}
	}
	if got, err := greet(l, "h2", h1.IP+":7000"); err == nil {
		t.Fatalf("h2 reached the partitioned h1: %q", got)
	}
	if code, out := dialFrom(t, l, "h1", h2.IP+":7000", time.Second); code == 0 {
		t.Fatalf("the partitioned h1 reached h2: %s", out)
	}
	if err := l.Heal(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	if got, err := greet(l, "h2", h1.IP+":7000"); err != nil || got != "hello from h1" {
		t.Fatalf("from h2 to h1 after Heal: %q, %v", got, err)
	}
	if err := l.Heal(ctx, "h1"); err == nil {
		t.Fatal("a second Heal succeeded")
	}
}
