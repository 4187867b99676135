package runtime

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
)

// Adopt finds the instances that the shims of a previous detached run on this data
// directory still run, watches them as if this Local had started them, and returns
// their Infos, sorted by ID. A record is adopted only if its shim runs with the pid and
// start time recorded (a pid reused by another process is never adopted). An instance
// that ended while no Local watched it is reported once on Exits, with the status its
// shim recorded. What cannot be adopted (a record without a live shim or recorded end, a
// damaged record, a record of the default mode) is cleaned as CleanLeftovers does, with
// a log line naming it. Folders of ended instances beyond Options.KeepStopped are
// removed. Call it once after NewLocal, before Start; it fails unless
// Options.Detached is set. Errors are joined; the instances adopted are returned too.
func (l *Local) Adopt(ctx context.Context) ([]Info, error) {
	if !l.detached {
		return nil, errors.New("adopt: the runtime is not in detached mode (Options.Detached)")
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, fmt.Errorf("adopt: %w", ErrClosed)
	}
	l.starting.Add(1)
	l.mu.Unlock()
	defer l.starting.Done()

	ents, err := os.ReadDir(l.pidDir())
	if err != nil {
		return nil, fmt.Errorf("adopt: %w", err)
	}
	boot := bootID()
	var infos []Info
	var errs []error
	for _, e := range ents {
		name := e.Name()
		if !validID(name) || l.running(name) {
			continue
		}
		path := l.pidPath(name)
		b, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rec, err := parsePidRecord(b)
		if err != nil {
			l.log.Warn("removing damaged pid record", "instance", name, "error", err)
			os.Remove(path)
			continue
		}
		info, err := l.adopt(ctx, rec, boot)
		if err != nil {
			errs = append(errs, fmt.Errorf("instance %s: %w", rec.ID, err))
			continue
		}
		if info != nil {
			infos = append(infos, *info)
		}
	}
	l.pruneStopped()
	slices.SortFunc(infos, func(a, b Info) int { return strings.Compare(a.ID, b.ID) })
	if err := errors.Join(errs...); err != nil {
		return infos, fmt.Errorf("adopt: %w", err)
	}
	return infos, nil
}

// adopt handles one record of a previous run: it watches a live shim (returning the
// instance's Info), reports an end the shim recorded, or cleans what is left.
func (l *Local) adopt(ctx context.Context, rec pidRecord, boot string) (*Info, error) {
	work := l.workDir(rec.ID)
	reason := "recorded by a Local in the default mode"
	if sh := rec.Shim; sh != nil {
		reason = "its shim no longer runs and recorded no end"
		if rec.BootID == boot {
			if st, err := readStat(sh.PID); err == nil && st.alive() && st.StartTime == sh.StartTicks {
				if watch, err := watchPid(sh.PID, sh.StartTicks); err == nil {
					return l.watchAdopted(rec, watch), nil
				}
				// It ended meanwhile: its recorded end is read below.
			}
		}
		if x, err := readExitRecord(work, rec); err == nil {
			if err := os.Remove(l.pidPath(rec.ID)); err != nil {
				return nil, err
			}
			x.Labels = maps.Clone(sh.Labels)
			x.LogTail = readLogTail(instanceLogPath(work), 20)
			l.log.Info("instance ended while no runtime watched it", "instance", x.ID, "code", x.Code,
				"signal", x.Signal, "stopped", x.Stopped)
			l.exits.push(x)
			return nil, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			reason = err.Error()
		}
	}
	l.log.Warn("cleaning a leftover instance that cannot be adopted", "instance", rec.ID, "reason", reason)
	l.killShim(rec, boot)
	if err := l.killLeftover(ctx, rec, boot); err != nil {
		return nil, err
	}
	if err := os.Remove(l.pidPath(rec.ID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return nil, nil
}

// watchAdopted lists the instance of a live shim and starts watching it.
func (l *Local) watchAdopted(rec pidRecord, watch *pidWatch) *Info {
	inst := &instance{info: rec.info(l.workDir(rec.ID)), shim: &shimHandle{watch: watch, rec: rec},
		done: make(chan struct{})}
	l.mu.Lock()
	l.insts[rec.ID] = inst
	l.procs.Add(1)
	l.mu.Unlock()
	go l.watchShim(inst)
	l.log.Info("instance adopted", "instance", rec.ID, "pid", rec.PID, "shim_pid", rec.Shim.PID, "addr", inst.info.Addr)
	return &inst.info
}
