package lb

import (
	"fmt"
	"runtime"
	"testing"
)

// BenchmarkRouteMemory reports the heap a balancer holds per host route
// (one exact host each, one pool) at 10,000 routes, after a request to
// none of them ("idle") and after one request to each ("served"). Each
// iteration builds a whole balancer; the figure is the point, not ns/op.
// bench/routemem.sh measures the process's RSS against HAProxy's map.
func BenchmarkRouteMemory(b *testing.B) {
	const n = 10000
	cfg := baseConfig("127.0.0.1:1")
	cfg.Routes = nil
	for i := range n {
		cfg.Routes = append(cfg.Routes, Route{Name: fmt.Sprintf("r%d", i), Host: fmt.Sprintf("h%d.example.com", i), Pool: "app"})
	}
	var idle, served float64
	for b.Loop() {
		before := heapInUse()
		bal, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		idle = float64(heapInUse()-before) / n
		// What a request's end does for its route (metrics.observe).
		for i := range n {
			rt := bal.tbl.Load().routers["web"].match(fmt.Sprintf("h%d.example.com", i), "/")
			rt.m.counter(200).Inc()
			rt.m.series().dur.Observe(0.001)
		}
		served = float64(heapInUse()-before) / n
		runtime.KeepAlive(bal)
	}
	b.ReportMetric(idle, "B/idle-route")
	b.ReportMetric(served, "B/served-route")
}

func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
