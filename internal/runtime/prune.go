package runtime

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// DefaultKeepStopped is how many folders of ended instances a Local keeps
// when Options.KeepStopped is zero: enough for `shoal logs` of the
// instances a recent deploy, crash loop or scale-down ended, few enough
// that a long-running host does not fill its disk with old logs.
const DefaultKeepStopped = 20

// markEnded sets the modification time of an ended instance's folder to
// at, the time it ended, which is what pruneStopped orders folders by.
// The time the kernel records on its own when tmp/ is removed comes from
// a coarse clock (one tick, often 4 ms): instances that end within one
// tick, such as a crash followed at once by a Stop, get the same time and
// their order is lost. Go's clock has nanoseconds. A failure only makes
// the order less exact, so it is ignored.
func markEnded(workDir string, at time.Time) {
	_ = os.Chtimes(workDir, at, at)
}

// pruneStopped removes the folders of ended instances under instances/,
// keeping the newest l.keep by modification time (the time the instance
// ended: see markEnded). Folders of instances that run, are starting or
// still have a pid record are never touched, nor anything whose name is
// not an instance id. Failures are logged; pruning is
// retried after the next exit.
func (l *Local) pruneStopped() {
	if l.keep < 0 {
		return
	}
	l.pruneMu.Lock()
	defer l.pruneMu.Unlock()
	root := filepath.Join(l.dataDir, "instances")
	ents, err := os.ReadDir(root)
	if err != nil {
		l.log.Warn("prune instance folders", "error", err)
		return
	}
	type dir struct {
		id  string
		mod time.Time
	}
	var ended []dir
	for _, e := range ents {
		if !e.IsDir() || !validID(e.Name()) || l.running(e.Name()) {
			continue
		}
		// A pid record names an instance that runs or whose end is not yet
		// reported: a detached one not adopted (yet), or a leftover.
		if _, err := os.Lstat(l.pidPath(e.Name())); err == nil {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		ended = append(ended, dir{e.Name(), fi.ModTime()})
	}
	if len(ended) <= l.keep {
		return
	}
	slices.SortFunc(ended, func(a, b dir) int { // newest first
		if c := b.mod.Compare(a.mod); c != 0 {
			return c
		}
		return strings.Compare(b.id, a.id)
	})
	for _, d := range ended[l.keep:] {
		// Claim the id so that a Start of the same id cannot create the
		// folder while it is being removed.
		l.mu.Lock()
		_, busy := l.insts[d.id]
		if !busy {
			l.removing[d.id] = true
		}
		l.mu.Unlock()
		if busy {
			continue
		}
		if err := os.RemoveAll(filepath.Join(root, d.id)); err != nil {
			l.log.Warn("remove instance folder", "instance", d.id, "error", err)
		}
		l.mu.Lock()
		delete(l.removing, d.id)
		l.mu.Unlock()
	}
}
