package cli

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"

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

// newBackupCmd is `shoal backup [-c shoal.yaml] [-o FILE]`.
func newBackupCmd(env *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup [-o FILE]",
		Short: "write a verified copy of the store",
		Args:  noArgs,
	}
	file := cmd.Flags().StringP("config", "c", config.AppFileName, "the app's configuration `file`, to find its data directory")
	out := cmd.Flags().StringP("output", "o", "", "the backup `file` to write (default: shoal-backup-<UTC time>.db in this folder); must not exist")
	cmd.RunE = func(*cobra.Command, []string) error {
		return runBackup(env, *file, *out)
	}
	return cmd
}

func runBackup(env *Env, file, dst string) error {
	path, err := dataStore(file)
	if err != nil {
		return err
	}
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

// newRestoreCmd is `shoal restore [-c shoal.yaml] FILE`.
func newRestoreCmd(env *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "replace the store with a backup, while shoal up is stopped",
		Args:  func(*cobra.Command, []string) error { return nil }, // checked below, with an example
	}
	file := cmd.Flags().StringP("config", "c", config.AppFileName, "the app's configuration `file`, to find its data directory")
	cmd.RunE = func(_ *cobra.Command, args []string) error {
		if len(args) != 1 {
			return usagef("restore needs one backup file: shoal restore FILE (for example %s)", store.BackupPath(filepath.Join("<data_dir>", storeFile)))
		}
		return runRestore(env, *file, args[0])
	}
	return cmd
}

func runRestore(env *Env, file, from string) error {
	path, err := dataStore(file)
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
