package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/shoal-dev/shoal/internal/atomicfile"
)

// pidRecordVersion is the schema version of <data>/runtime/pids/<id>.
const pidRecordVersion = 1

// pidRecord is the persisted form of one running instance's process group, written when
// it starts and removed after it is reaped. A record left behind means Shoal died.
type pidRecord struct {
	Version int    `json:"version"`
	ID      string `json:"id"`
	PID     int    `json:"pid"`  // the direct child, leader of the group
	PGID    int    `json:"pgid"` // equal to PID (Setpgid)
	// StartTicks is field 22 of /proc/<pid>/stat of the leader: with BootID it tells
	// the leader apart from an unrelated process that reuses its pid.
	StartTicks uint64 `json:"start_ticks"`
	BootID     string `json:"boot_id"`
}

func parsePidRecord(b []byte) (pidRecord, error) {
	var r pidRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return pidRecord{}, fmt.Errorf("parse pid record: %w", err)
	}
	if r.Version != pidRecordVersion {
		return pidRecord{}, fmt.Errorf("parse pid record: unsupported version %d", r.Version)
	}
	if r.PID <= 1 || r.PGID <= 1 || !validID(r.ID) {
		return pidRecord{}, fmt.Errorf("parse pid record: invalid id %q, pid %d or pgid %d", r.ID, r.PID, r.PGID)
	}
	return r, nil
}

func (l *Local) pidDir() string           { return filepath.Join(l.dataDir, "runtime", "pids") }
func (l *Local) pidPath(id string) string { return filepath.Join(l.pidDir(), id) }

// writePidRecord writes the record atomically and durably (temp, fsync, rename, fsync dir).
func (l *Local) writePidRecord(r pidRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return atomicfile.Write(l.pidPath(r.ID), b, 0o600)
}

// CleanLeftovers kills, with SIGKILL, the process groups recorded by a previous run of
// Shoal on this data directory that are still alive, and removes their records. Records
// of instances this Local is running are left alone. A group is killed only if it is
// provably ours: same boot, and either its leader is gone (a pid that is still the id of a
// live group cannot be reused, so the members are the ones our leader started) or the
// leader's start time matches the record. Call it once after NewLocal, before Start.
// It returns after the groups are gone or ctx ends; errors are joined. It also removes
// the folders of ended instances beyond Options.KeepStopped.
func (l *Local) CleanLeftovers(ctx context.Context) error {
	ents, err := os.ReadDir(l.pidDir())
	if err != nil {
		return fmt.Errorf("clean leftovers: %w", err)
	}
	boot := bootID()
	var errs []error
	for _, e := range ents {
		name := e.Name()
		if !validID(name) || l.running(name) {
			continue
		}
		path := filepath.Join(l.pidDir(), name)
		b, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rec, err := parsePidRecord(b)
		if err != nil {
			l.log.Warn("removing unreadable pid record", "instance", name, "error", err)
			os.Remove(path)
			continue
		}
		if err := l.killLeftover(ctx, rec, boot); err != nil {
			errs = append(errs, fmt.Errorf("instance %s: %w", rec.ID, err))
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	l.pruneStopped()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("clean leftovers: %w", err)
	}
	return nil
}

func (l *Local) killLeftover(ctx context.Context, rec pidRecord, boot string) error {
	if rec.BootID != boot {
		return nil // recorded before a reboot: those processes are gone
	}
	if leader, err := readStat(rec.PGID); err == nil && leader.alive() && leader.StartTime != rec.StartTicks {
		return nil // pid reused by an unrelated process: its group is not ours
	}
	members, err := groupMembers(rec.PGID)
	if err != nil {
		return err
	}
	if len(members) == 0 {
		return nil
	}
	l.log.Warn("killing leftover instance from a previous run", "instance", rec.ID, "pgid", rec.PGID, "processes", len(members))
	if err := syscall.Kill(-rec.PGID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill group %d: %w", rec.PGID, err)
	}
	return pollUntil(ctx, 20*time.Millisecond, func() bool { return !groupAlive(rec.PGID) })
}

// pollUntil calls cond every interval until it is true (nil) or ctx ends (ctx's error).
func pollUntil(ctx context.Context, interval time.Duration, cond func() bool) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
