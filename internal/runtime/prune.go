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

// pruneStopped removes the folders of ended instances under instances/,
// keeping the newest l.keep by modification time (a folder is modified
// last when its instance ends: its tmp/ is removed then). Folders of
// instances that run or are starting are never touched, nor anything
// whose name is not an instance id. Failures are logged; pruning is
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
