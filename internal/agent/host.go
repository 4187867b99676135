package agent

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"

	"github.com/shoal-dev/shoal/internal/api"
)

func (a *Agent) handleHost(w http.ResponseWriter, r *http.Request) error {
	h := api.HostInfo{
		Name: a.name, Addr: a.advertise, CPUs: goruntime.NumCPU(),
		Term: a.fence.current(), Epoch: a.exits.epoch, Instances: len(a.rt.List()),
	}
	if docker, _ := a.engine(); docker != nil {
		h.Instances += len(docker.List())
		h.Containers = true
	}
	var err error
	if h.MemoryBytes, err = memTotal("/proc/meminfo"); err != nil {
		return err
	}
	if h.Load1, h.Load5, h.Load15, err = loadAvg("/proc/loadavg"); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, h)
	return nil
}

// memTotal reads MemTotal (in kB) from a meminfo file and returns bytes.
func memTotal(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("host memory: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			break
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 {
			break
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("host memory: no MemTotal line in kB in %s", path)
}

// loadAvg reads the three load averages of a loadavg file.
func loadAvg(path string) (l1, l5, l15 float64, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("host load: %w", err)
	}
	f := strings.Fields(string(b))
	var v [3]float64
	for i := range v {
		if i >= len(f) {
			return 0, 0, 0, fmt.Errorf("host load: %s has %d fields, want at least 3", path, len(f))
		}
		if v[i], err = strconv.ParseFloat(f[i], 64); err != nil {
			return 0, 0, 0, fmt.Errorf("host load: %s: %w", path, err)
		}
	}
	return v[0], v[1], v[2], nil
}
