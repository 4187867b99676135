package cli

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"time"

	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/store"
)

// dataStore returns the store file of the app configured in file.
func dataStore(file string) (string, error) {
	cfg, err := loadAppConfig(file)
	if err != nil {
		return "", err
	}
	return filepath.Join(cfg.DataDir, storeFile), nil
}

// runBackup is `shoal backup [-c shoal.yaml] [-o FILE]`.
func runBackup(_ context.Context, env *Env, args []string) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	file := fs.String("c", config.AppFileName, "the app's configuration `file`, to find its data directory")
	out := fs.String("o", "", "the backup `file` to write (default: shoal-backup-<UTC time>.db in this folder); must not exist")
	if err := fs.Parse(args); err != nil {
		return &UsageError{Err: err}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	path, err := dataStore(*file)
	if err != nil {
		return err
	}
	dst := *out
	if dst == "" {
		dst = "shoal-backup-" + time.Now().UTC().Format("20060102T150405Z") + ".db"
	}
	fromKept, err := store.Backup(path, dst)
	if err != nil {
		return err
	}
	sum, err := store.Verify(dst)
	if err != nil {
		return err
	}
	if fromKept {
		fmt.Fprintf(env.Stdout, "shoal up is running: copied its automatic backup %s (state as of the last change of a release, scale or env)\n", store.BackupPath(path))
	}
	fmt.Fprintf(env.Stdout, "backup of %s written to %s (%s)\n", path, dst, describe(sum))
	return nil
}

// runRestore is `shoal restore [-c shoal.yaml] FILE`.
func runRestore(_ context.Context, env *Env, args []string) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	file := fs.String("c", config.AppFileName, "the app's configuration `file`, to find its data directory")
	if err := fs.Parse(args); err != nil {
		return &UsageError{Err: err}
	}
	if fs.NArg() != 1 {
		return usagef("restore needs one backup file: shoal restore FILE (for example %s)", store.BackupPath(filepath.Join("<data_dir>", storeFile)))
	}
	from := fs.Arg(0)
	path, err := dataStore(*file)
	if err != nil {
		return err
	}
	aside, err := store.Restore(path, from, time.Now())
	if err != nil {
		return err
	}
	sum, err := store.Verify(path)
	if err != nil {
		return err
	}
	if aside != "" {
		fmt.Fprintf(env.Stdout, "the previous store file is kept as %s\n", aside)
	}
	fmt.Fprintf(env.Stdout, "restored %s from %s (%s); start it with shoal up\n", path, from, describe(sum))
	return nil
}

func describe(s store.Summary) string {
	d := fmt.Sprintf("schema %d, %d releases", s.Schema, s.Releases)
	for _, app := range slices.Sorted(maps.Keys(s.Apps)) {
		d += fmt.Sprintf(", %s at v%d", app, s.Apps[app])
	}
	return d
}
