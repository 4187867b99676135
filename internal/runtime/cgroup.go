package runtime

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// cgroups gives each instance of a Local (default mode) a cgroup v2 of its own, under
// the cgroup this process runs in, where the host lets it make one: the kernel then
// lists the instance's processes (cgroup.procs), including those that left its process
// group or whose parent exited, at a cost that grows with the instance alone, and its
// end can take every one of them (cgroup.kill). Where no cgroup v2 is mounted, or this
// process may not make cgroups (not root, no delegation, read-only), the Local goes on
// without (Stats walks the process tree instead). Under systemd, run Shoal's unit with
// Delegate=yes so that the cgroups made here are Shoal's to manage.
//
// Layout: <cgroup2 mount><own cgroup>/shoal-<hash of the data dir>/<instance id>.<n>.
type cgroups struct {
	dir string
	seq atomic.Uint64
}

// openCgroups makes (or finds) the Local's cgroup directory; nil when the host does not
// allow it.
func openCgroups(dataDir string) *cgroups {
	mount, own, err := ownCgroup()
	if err != nil {
		return nil
	}
	h := fnv.New64a()
	h.Write([]byte(dataDir))
	dir := filepath.Join(mount, own, fmt.Sprintf("shoal-%016x", h.Sum64()))
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil
	}
	// A cgroup the kernel made has cgroup.procs; a plain directory (a tmpfs that only
	// looks like the mount) does not.
	if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err != nil {
		os.Remove(dir)
		return nil
	}
	c := &cgroups{dir: dir}
	// Names never repeat one a previous run may have left behind.
	c.seq.Store(uint64(time.Now().UnixNano()))
	return c
}

// ownCgroup returns the cgroup v2 mount point and this process's cgroup path in it.
func ownCgroup() (mount, own string, err error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", "", err
	}
	for line := range strings.Lines(string(b)) {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok {
			own = p
		}
	}
	if own == "" {
		return "", "", errors.New("no cgroup v2 membership")
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options ... - fstype source super
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields := strings.Fields(pre)
		if !ok || len(fields) < 5 || !strings.HasPrefix(post, "cgroup2 ") || fields[3] != "/" {
			continue
		}
		return unescapeMount(fields[4]), own, nil
	}
	return "", "", errors.New("no cgroup v2 mount")
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// create makes a new, empty cgroup for an instance and returns its path and an open
// descriptor for clone3's CLONE_INTO_CGROUP (the caller closes it after the fork).
func (c *cgroups) create(id string) (string, *os.File, error) {
	path := filepath.Join(c.dir, id+"."+strconv.FormatUint(c.seq.Add(1), 10))
	if err := os.Mkdir(path, 0o755); err != nil {
		return "", nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		os.Remove(path)
		return "", nil, err
	}
	return path, f, nil
}

// cgroupMembers returns the live processes in the cgroup at path.
func cgroupMembers(path string) ([]procStat, error) {
	b, err := os.ReadFile(filepath.Join(path, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var out []procStat
	for _, f := range bytes.Fields(b) {
		pid, err := strconv.Atoi(string(f))
		if err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil && st.alive() {
			out = append(out, st)
		}
	}
	return out, nil
}

// killCgroup sends SIGKILL to every process in the cgroup at path.
func killCgroup(path string) {
	if err := os.WriteFile(filepath.Join(path, "cgroup.kill"), []byte("1"), 0); err != nil {
		// Before Linux 5.14 there is no cgroup.kill: signal each member.
		if ms, err := cgroupMembers(path); err == nil {
			for _, m := range ms {
				syscall.Kill(m.PID, syscall.SIGKILL)
			}
		}
	}
}

// removeCgroup kills whatever is left in the cgroup at path and removes it once empty,
// waiting at most timeout for the killed processes to go.
func removeCgroup(path string, timeout time.Duration) error {
	killCgroup(path)
	deadline := time.Now().Add(timeout)
	for {
		err := os.Remove(path)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup %s: %w", path, err)
		}
		time.Sleep(5 * time.Millisecond) // killed processes are still being torn down
	}
}

// removeLeftovers removes the cgroups a previous run of this data dir left (a crash),
// killing their processes; keep names the cgroups of running instances.
func (c *cgroups) removeLeftovers(keep map[string]bool) error {
	names, err := readDirNames(c.dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		p := filepath.Join(c.dir, n)
		if keep[p] {
			continue
		}
		if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
			continue
		}
		if err := removeCgroup(p, 5*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
