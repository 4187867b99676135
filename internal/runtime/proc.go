package runtime

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// userHZ is the unit of CPU times in /proc/<pid>/stat. Linux reports them in USER_HZ,
// which is 100 on every architecture Go supports, whatever the kernel's internal HZ.
const userHZ = 100

// procStat holds the fields of /proc/<pid>/stat this package uses.
type procStat struct {
	PID       int
	State     byte
	PPID      int
	PGRP      int
	UTime     uint64 // clock ticks
	STime     uint64 // clock ticks
	StartTime uint64 // clock ticks after boot
	RSSPages  int64
}

func (p procStat) alive() bool { return p.State != 'Z' && p.State != 'X' && p.State != 'x' }

// parseStat parses the contents of /proc/<pid>/stat. The command name (field 2) may hold
// spaces and parentheses, so fields are counted from the last ')'.
func parseStat(b []byte) (procStat, error) {
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 1 || end < open {
		return procStat{}, errors.New("parse stat: no command name")
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil || pid <= 0 {
		return procStat{}, fmt.Errorf("parse stat: bad pid %q", b[:open])
	}
	f := strings.Fields(string(b[end+1:]))
	// f[0] is field 3 (state); field n is f[n-3].
	if len(f) < 22 || len(f[0]) != 1 {
		return procStat{}, errors.New("parse stat: too few fields")
	}
	p := procStat{PID: pid, State: f[0][0]}
	ints := []struct {
		field int
		dst   any
	}{{4, &p.PPID}, {5, &p.PGRP}, {14, &p.UTime}, {15, &p.STime}, {22, &p.StartTime}, {24, &p.RSSPages}}
	for _, x := range ints {
		s := f[x.field-3]
		switch d := x.dst.(type) {
		case *int:
			v, err := strconv.Atoi(s)
			if err != nil {
				return procStat{}, fmt.Errorf("parse stat: field %d: %w", x.field, err)
			}
			*d = v
		case *uint64:
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return procStat{}, fmt.Errorf("parse stat: field %d: %w", x.field, err)
			}
			*d = v
		case *int64:
			v, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return procStat{}, fmt.Errorf("parse stat: field %d: %w", x.field, err)
			}
			*d = v
		}
	}
	return p, nil
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	return parseStat(b)
}

// groupMembers returns the live (not zombie) processes whose process group is pgid.
// It scans /proc, so it costs one read per process on the host.
func groupMembers(pgid int) ([]procStat, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	var out []procStat
	for _, n := range names {
		if n[0] < '0' || n[0] > '9' {
			continue
		}
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil {
			continue // exited meanwhile
		}
		if st.PGRP == pgid && st.alive() {
			out = append(out, st)
		}
	}
	return out, nil
}

// errNoChildrenFile means the kernel has no /proc/<pid>/task/<tid>/children
// (CONFIG_PROC_CHILDREN): a process tree cannot be walked.
var errNoChildrenFile = errors.New("no /proc/<pid>/task/<tid>/children on this kernel")

// treeMembers returns the live processes of group pgid found by walking the process
// tree down from root through /proc/<pid>/task/<tid>/children: one stat read per
// process of the group and one children read per thread of each, whatever else runs on
// the host. Processes of other groups are neither returned nor walked into. A process of
// the group whose parent exited has been reparented out of the tree and is not found
// (groupMembers, which scans the host, finds it). It returns errNoChildrenFile when the
// kernel cannot list children, and no error when root has exited.
func treeMembers(root, pgid int) ([]procStat, error) {
	var out []procStat
	seen := map[int]bool{}
	stack := []int{root}
	var buf []byte
	for len(stack) > 0 {
		pid := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		st, err := readStat(pid)
		if err != nil || st.PGRP != pgid || !st.alive() {
			continue // exited meanwhile, or not of the group
		}
		out = append(out, st)
		dir := "/proc/" + strconv.Itoa(pid) + "/task/"
		tids, err := readDirNames(dir)
		if err != nil {
			continue // exited meanwhile
		}
		for _, tid := range tids {
			buf, err = readFileInto(dir+tid+"/children", buf[:0])
			if err != nil {
				if errors.Is(err, os.ErrNotExist) && pid == root && tid == strconv.Itoa(pid) {
					if _, serr := os.Stat(dir + tid); serr == nil {
						return nil, errNoChildrenFile
					}
				}
				continue // the thread ended meanwhile
			}
			for _, f := range bytes.Fields(buf) {
				if c, err := strconv.Atoi(string(f)); err == nil && c > 0 {
					stack = append(stack, c)
				}
			}
		}
	}
	return out, nil
}

// instanceMembers returns the live processes of an instance whose leader is pid and
// whose process group is pgid: by walking its process tree where the kernel can list
// children, else by scanning the host.
func instanceMembers(pid, pgid int) ([]procStat, error) {
	m, err := treeMembers(pid, pgid)
	if errors.Is(err, errNoChildrenFile) {
		return groupMembers(pgid)
	}
	return m, err
}

func readDirNames(dir string) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Readdirnames(-1)
}

// readFileInto appends the contents of a /proc file (whose size stat does not know) to
// buf.
func readFileInto(path string, buf []byte) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return buf, err
	}
	defer f.Close()
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := f.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// groupAlive reports whether any live process is in group pgid.
func groupAlive(pgid int) bool {
	m, err := groupMembers(pgid)
	return err != nil || len(m) > 0 // when /proc is unreadable, assume alive
}

// bootID identifies the current boot, so pid records from before a reboot are ignored.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
