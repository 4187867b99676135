package controller

import (
	"testing"
)

// TestReconcilePassesAreTimed: the reconcile loop's passes are counted in
// shoal_reconcile_pass_seconds, among the controller's metrics, once the
// group has come up (at least the first pass and one per launch served).
func TestReconcilePassesAreTimed(t *testing.T) {
	dir := t.TempDir()
	h := start(t, dir, writeApp(t, dir, "serve", 2, 3))
	h.waitFor("two in service", inService(2))
	mfs, err := h.c.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "shoal_reconcile_pass_seconds" {
			continue
		}
		hist := mf.GetMetric()[0].GetHistogram()
		if n := hist.GetSampleCount(); n < 3 {
			t.Fatalf("%d passes counted; want at least 3 (the first, and one after each instance served)", n)
		}
		if s := hist.GetSampleSum(); s <= 0 {
			t.Fatalf("passes took %v s in all; want more than 0", s)
		}
		return
	}
	t.Fatal("no shoal_reconcile_pass_seconds among the controller's metrics")
}
