package main

import (
	"bytes"
	"fmt"
	"os"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// cpuSelf returns this process's user+system CPU time (getrusage).
func cpuSelf() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuOf returns process pid's user+system CPU time from /proc/pid/stat.
func cpuOf(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	const hz = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / hz, nil
}

// statusKB returns a "VmRSS"-style field of /proc/pid/status in bytes
// (pid 0: this process).
func statusKB(pid int, field string) int64 {
	p := "/proc/self/status"
	if pid != 0 {
		p = fmt.Sprintf("/proc/%d/status", pid)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n << 10
		}
	}
	return 0
}

// heap is the Go heap after a collection.
type heap struct{ inuse, sys uint64 }

func heapNow() heap {
	goruntime.GC()
	var m goruntime.MemStats
	goruntime.ReadMemStats(&m)
	return heap{inuse: m.HeapInuse, sys: m.Sys}
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// hist is a merged cumulative histogram (Prometheus buckets).
type hist struct {
	bounds []float64
	cum    []uint64
	count  uint64
	sum    float64
}

// addFamily adds the histogram of family name in mfs to h.
func (h *hist) addFamily(mfs []*dto.MetricFamily, name string) {
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			ph := m.GetHistogram()
			if h.bounds == nil {
				for _, b := range ph.GetBucket() {
					h.bounds = append(h.bounds, b.GetUpperBound())
				}
				h.cum = make([]uint64, len(h.bounds))
			}
			for i, b := range ph.GetBucket() {
				h.cum[i] += b.GetCumulativeCount()
			}
			h.count += ph.GetSampleCount()
			h.sum += ph.GetSampleSum()
		}
	}
}

// addPasses adds app a's reconcile pass histogram to h.
func (h *hist) addPasses(a *appRun) {
	if mfs, err := a.ctl.Metrics().Gather(); err == nil {
		h.addFamily(mfs, "shoal_reconcile_pass_seconds")
	}
}

// histWire is a hist as a server's process reports it.
type histWire struct {
	Bounds []float64 `json:"bounds"`
	Cum    []uint64  `json:"cum"`
	Count  uint64    `json:"count"`
	Sum    float64   `json:"sum"`
}

func (h hist) wire() histWire {
	return histWire{Bounds: h.bounds, Cum: h.cum, Count: h.count, Sum: h.sum}
}

// plus returns h + o (the same buckets, or either empty).
func (h hist) plus(o histWire) hist {
	if h.bounds == nil {
		h.bounds = o.Bounds
	}
	d := hist{bounds: h.bounds, cum: make([]uint64, len(h.bounds)), count: h.count + o.Count, sum: h.sum + o.Sum}
	for i := range d.cum {
		if i < len(h.cum) {
			d.cum[i] += h.cum[i]
		}
		if i < len(o.Cum) {
			d.cum[i] += o.Cum[i]
		}
	}
	return d
}

// clone returns a copy of h that shares nothing with it.
func (h hist) clone() hist {
	h.cum = slices.Clone(h.cum)
	return h
}

// minus returns h - o (o an earlier snapshot of the same series).
func (h hist) minus(o hist) hist {
	d := hist{bounds: h.bounds, cum: make([]uint64, len(h.cum)), count: h.count - o.count, sum: h.sum - o.sum}
	for i := range h.cum {
		d.cum[i] = h.cum[i]
		if i < len(o.cum) {
			d.cum[i] -= o.cum[i]
		}
	}
	return d
}

func (h hist) mean() time.Duration {
	if h.count == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.count) * 1e9)
}

// quantile estimates the q-quantile by linear interpolation within its
// bucket, as Prometheus's histogram_quantile does.
func (h hist) quantile(q float64) time.Duration {
	if h.count == 0 {
		return 0
	}
	rank := q * float64(h.count)
	lower, prevCum := 0.0, uint64(0)
	for i, b := range h.bounds {
		if float64(h.cum[i]) >= rank {
			in := float64(h.cum[i] - prevCum)
			frac := 1.0
			if in > 0 {
				frac = (rank - float64(prevCum)) / in
			}
			return time.Duration((lower + (b-lower)*frac) * 1e9)
		}
		lower, prevCum = b, h.cum[i]
	}
	return -1 // beyond the last bound
}
