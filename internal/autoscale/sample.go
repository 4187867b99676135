package autoscale

import (
	"math"
	"time"
)

// Sample is one observation of a group at Time: the instances in service
// (serving traffic from the balancer, not draining) and their counters.
// Counters are cumulative since the instance started, as the balancer and
// /proc report them, so a missed observation loses no traffic: the next
// one carries it.
type Sample struct {
	Time      time.Time
	Instances []InstanceSample
}

// InstanceSample is one instance in a Sample.
type InstanceSample struct {
	// ID identifies the instance across samples; a restarted process is a
	// new instance with a new ID.
	ID string
	// InService is when the instance entered service (passed its health
	// check and joined the balancer's pool). The zero time means not in
	// service: the instance is ignored. It counts in metrics once it has
	// been in service for Config.Warmup.
	InService time.Time
	// Requests is the cumulative count of requests the balancer completed
	// on the instance. A decrease is taken as a counter reset.
	Requests uint64
	// InFlight is the number of requests in flight at Time.
	InFlight int
	// CPUSeconds is the cumulative user+system CPU time of the instance's
	// processes (from /proc), when HasCPU.
	CPUSeconds float64
	HasCPU     bool
	// Latency is the cumulative histogram of the instance's request
	// latencies. A zero Histogram means none was measured.
	Latency Histogram
}

// Histogram is a cumulative latency histogram. Bounds are the upper bounds
// of the buckets in seconds, ascending; an implicit +Inf bucket follows.
// Counts has len(Bounds)+1 entries, each the number of requests that fell
// in that bucket (not cumulative across buckets, unlike Prometheus'
// "le"), each growing over time. Histograms are merged only when their
// Bounds are equal, so the balancer should use one set of bounds.
type Histogram struct {
	Bounds []float64
	Counts []uint64
}

// valid reports whether h has a usable shape.
func (h Histogram) valid() bool {
	return len(h.Bounds) > 0 && len(h.Counts) == len(h.Bounds)+1
}

// sameBounds reports whether a and b have equal bounds.
func sameBounds(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// quantile estimates the q-quantile (0 < q < 1) of the requests counted
// in counts, by linear interpolation within the bucket it falls in (the
// first bucket starts at 0). A quantile in the +Inf bucket is reported as
// the highest finite bound, which is then a lower bound of the truth:
// choose bounds well above any target. It returns 0 for no requests.
func quantile(bounds []float64, counts []uint64, q float64) float64 {
	var total uint64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var below float64
	for i, c := range counts {
		if c == 0 {
			continue
		}
		if below+float64(c) >= rank {
			if i == len(bounds) {
				return bounds[len(bounds)-1]
			}
			lower := 0.0
			if i > 0 {
				lower = bounds[i-1]
			}
			frac := (rank - below) / float64(c)
			return lower + (bounds[i]-lower)*math.Max(0, math.Min(1, frac))
		}
		below += float64(c)
	}
	return bounds[len(bounds)-1]
}
