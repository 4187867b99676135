package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
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
	// Shim is set for an instance run in detached mode. A record without it is the
	// default mode's: its group died with the Local that wrote it, or must.
	Shim *shimRecord `json:"shim,omitempty"`
}

// shimRecord is what a pid record of detached mode adds: the shim, told apart from an
// unrelated process that reuses its pid as the leader is, and what Adopt needs to list
// the instance again. No secret is in it.
type shimRecord struct {
	PID        int               `json:"pid"`
	StartTicks uint64            `json:"start_ticks"`
	Port       int               `json:"port"`
	Dir        string            `json:"dir"`
	Command    string            `json:"command"`
	StartedAt  time.Time         `json:"started_at"`
	Labels     map[string]string `json:"labels,omitempty"`
	// StopTimeout is the instance's Spec.StopTimeout, resolved (never zero).
	StopTimeout time.Duration `json:"stop_timeout"`
}

// info is the Info of the instance a detached record describes.
func (r pidRecord) info(workDir string) Info {
	return Info{
		ID: r.ID, PID: r.PID, PGID: r.PGID, Port: r.Shim.Port, Addr: "127.0.0.1:" + strconv.Itoa(r.Shim.Port),
		Dir: r.Shim.Dir, WorkDir: workDir, LogPath: instanceLogPath(workDir), Command: r.Shim.Command,
		StartedAt: r.Shim.StartedAt, Labels: maps.Clone(r.Shim.Labels),
	}
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
	if sh := r.Shim; sh != nil && (sh.PID <= 1 || sh.Port <= 0 || sh.Port > 65535 || sh.StopTimeout <= 0) {
		return pidRecord{}, fmt.Errorf("parse pid record: invalid shim pid %d, port %d or stop timeout %s", sh.PID, sh.Port, sh.StopTimeout)
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
// Shoal on this data directory that are still alive, and the shims of a detached run
// (so a Local that does not adopt ends them), and removes their records. In detached
// mode call Adopt instead, which cleans only what it cannot adopt. Records
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
		l.killShim(rec, boot)
		if err := l.killLeftover(ctx, rec, boot); err != nil {
			errs = append(errs, fmt.Errorf("instance %s: %w", rec.ID, err))
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if l.cg != nil {
		keep := map[string]bool{}
		l.mu.Lock()
		for _, inst := range l.insts {
			if inst != nil && inst.cgroup != "" {
				keep[inst.cgroup] = true
			}
		}
		l.mu.Unlock()
		if err := l.cg.removeLeftovers(keep); err != nil {
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

// killShim SIGKILLs the shim of a detached record if it still runs (same boot, same
// start time). Its app's leader dies with it (Pdeathsig); the rest of the group is
// killLeftover's.
func (l *Local) killShim(rec pidRecord, boot string) {
	if rec.Shim == nil || rec.BootID != boot {
		return
	}
	if st, err := readStat(rec.Shim.PID); err == nil && st.alive() && st.StartTime == rec.Shim.StartTicks {
		l.log.Warn("killing leftover shim from a previous run", "instance", rec.ID, "shim_pid", rec.Shim.PID)
		syscall.Kill(rec.Shim.PID, syscall.SIGKILL)
	}
}

// exitRecordVersion is the schema version of <data>/instances/<id>/exit.json.
const exitRecordVersion = 1

// exitFileName is the file in which a shim records its instance's end.
const exitFileName = "exit.json"

// exitRecord is the persisted form of an instance's end, written by its shim (detached
// mode) once the group is reaped and the output is in the log, and read by the Local
// that watches the shim or, if none did, by the next Adopt.
type exitRecord struct {
	Version int    `json:"version"`
	ID      string `json:"id"`
	PID     int    `json:"pid"`
	// StartTicks is the leader's, as in its pid record: with PID it ties the record
	// to that one run of the id.
	StartTicks uint64    `json:"start_ticks"`
	Code       int       `json:"code"`
	Signal     string    `json:"signal,omitempty"`
	Stopped    bool      `json:"stopped"`
	Killed     bool      `json:"killed"`
	Err        string    `json:"error,omitempty"`
	At         time.Time `json:"at"`
}

func writeExitRecord(workDir string, x Exit, startTicks uint64) error {
	b, err := json.Marshal(exitRecord{Version: exitRecordVersion, ID: x.ID, PID: x.PID, StartTicks: startTicks,
		Code: x.Code, Signal: x.Signal, Stopped: x.Stopped, Killed: x.Killed, Err: x.Err, At: x.At})
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(workDir, exitFileName), b, 0o600)
}

// readExitRecord reads the end recorded in workDir for the run that rec describes; a
// record of another run of the id, or a damaged one, is an error.
func readExitRecord(workDir string, rec pidRecord) (Exit, error) {
	path := filepath.Join(workDir, exitFileName)
	b, err := os.ReadFile(path)
	if err != nil {
		return Exit{}, err
	}
	var r exitRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return Exit{}, fmt.Errorf("parse %s: %w", path, err)
	}
	if r.Version != exitRecordVersion || r.ID != rec.ID || r.PID != rec.PID || r.StartTicks != rec.StartTicks {
		return Exit{}, fmt.Errorf("%s: version %d, instance %s, pid %d: not the end of instance %s, pid %d",
			path, r.Version, r.ID, r.PID, rec.ID, rec.PID)
	}
	return Exit{ID: r.ID, PID: r.PID, Code: r.Code, Signal: r.Signal, Stopped: r.Stopped, Killed: r.Killed,
		Err: r.Err, At: r.At}, nil
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
