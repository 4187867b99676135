package fleet

import (
	"fmt"
	"maps"
)

// CheckSums recounts, from every host's instances, the sums placement and
// Status read (host.used) and the index by id (Fleet.where), and returns
// an error naming the first that differs.
func CheckSums(f *Fleet) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	where := 0
	for name, h := range f.hosts {
		n, groups, cpu, mem := 0, map[string]int{}, 0.0, int64(0)
		for id, p := range h.instances {
			if f.where[id] != h {
				return fmt.Errorf("instance %s on host %s is indexed on %v", id, name, f.where[id])
			}
			where++
			if p.ended {
				continue
			}
			n++
			groups[p.app]++
			cpu += p.cpu
			mem += p.mem
		}
		u := h.used
		if u.Instances != n || !maps.Equal(u.Groups, groups) || u.Memory != mem || diff(u.CPU, cpu) > 1e-9 {
			return fmt.Errorf("host %s: sums %+v, but its instances count %d %v, %g CPU, %d bytes", name, u, n, groups, cpu, mem)
		}
	}
	if where != len(f.where) {
		return fmt.Errorf("%d instances indexed, %d placed", len(f.where), where)
	}
	return nil
}

func diff(a, b float64) float64 { return max(a-b, b-a) }

// Misses returns how many heartbeats in a row host name has not answered.
func Misses(f *Fleet, name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if h := f.hosts[name]; h != nil {
		return h.misses
	}
	return 0
}
