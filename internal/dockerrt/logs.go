package dockerrt

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

// Logs writes the last tail lines of the instance's output (stdout and
// stderr, as the engine keeps them) to w, all when tail <= 0, and with
// follow keeps writing until the container exits or ctx ends. It returns
// an error wrapping ErrNotFound for an unknown instance. w sees the
// engine's bytes as they are: the caller redacts.
func (e *Engine) Logs(ctx context.Context, id string, tail int, follow bool, w io.Writer) error {
	c, err := e.lookup(id)
	if err != nil {
		return err
	}
	t := "all"
	if tail > 0 {
		t = strconv.Itoa(tail)
	}
	rc, err := e.cli.ContainerLogs(ctx, c.cid, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: t, Follow: follow})
	if err != nil {
		return fmt.Errorf("logs %s: %w", id, err)
	}
	defer rc.Close()
	if _, err := stdcopy.StdCopy(w, w, rc); err != nil && ctx.Err() == nil {
		return fmt.Errorf("logs %s: %w", id, err)
	}
	return nil
}

// Stats returns the resource use of the running instance: CPU time and
// memory in use (without the page cache), as the engine measures them.
func (e *Engine) Stats(ctx context.Context, id string) (Stats, error) {
	c, err := e.lookup(id)
	if err != nil {
		return Stats{}, err
	}
	r, err := e.cli.ContainerStatsOneShot(ctx, c.cid)
	if err != nil {
		return Stats{}, fmt.Errorf("stats %s: %w", id, err)
	}
	defer r.Body.Close()
	var s container.StatsResponse
	if err := json.NewDecoder(r.Body).Decode(&s); err != nil {
		return Stats{}, fmt.Errorf("stats %s: %w", id, err)
	}
	mem := int64(s.MemoryStats.Usage)
	// cgroup v1 reports "total_inactive_file" (or "cache"), v2
	// "inactive_file": the page cache the kernel can drop.
	for _, k := range []string{"total_inactive_file", "inactive_file"} {
		if v, ok := s.MemoryStats.Stats[k]; ok && int64(v) <= mem {
			mem -= int64(v)
			break
		}
	}
	return Stats{CPUSeconds: float64(s.CPUStats.CPUUsage.TotalUsage) / 1e9, RSSBytes: mem}, nil
}
