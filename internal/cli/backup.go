package cli

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/internal/atomicfile"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/daemon"
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

// newBackupCmd is `shoal backup [-c shoal.yaml] [-o FILE]`, and with
// --admin (or $SHOAL_ADMIN_URL) the backup of a `shoal server` or of its
// cluster, through its admin API.
func newBackupCmd(env *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup [-o FILE]",
		Short: "write a verified copy of the store (of shoal up here, or of a shoal server or cluster with --admin)",
		Args:  noArgs,
	}
	f := &upFlags{}
	cmd.Flags().StringVarP(&f.file, "config", "c", config.AppFileName, "the app's configuration `file`, to find its data directory")
	cmd.Flags().StringVar(&f.admin, "admin", "", "the admin API `URL` of a shoal server, or of any server of a cluster (default: $"+envAdminURL+"); without either, the store of shoal up in this folder")
	cmd.Flags().StringVar(&f.tokenFile, "token-file", "", "with --admin: the admin token `file` (default: $"+envToken+")")
	cmd.Flags().StringVar(&f.caPin, "ca-pin", "", "with --admin: the fleet CA's `pin` an https admin URL must present (default: $"+envCAPin+")")
	out := cmd.Flags().StringP("output", "o", "", "the backup `file` to write (default: shoal-backup-<UTC time>.db in this folder); must not exist")
	cmd.RunE = func(sub *cobra.Command, _ []string) error {
		if f.admin != "" || os.Getenv(envAdminURL) != "" {
			return runServerBackup(sub.Context(), env, f, *out)
		}
		return runBackup(env, f.file, *out)
	}
	return cmd
}

// backupName is a backup's default file name.
func backupName() string {
	return "shoal-backup-" + time.Now().UTC().Format("20060102T150405Z") + ".db"
}

// runServerBackup writes the backup of the server (or cluster) behind f's
// admin API to dst: a temporary file beside dst, synced and verified
// (store.Verify), then linked as dst, which must not exist; nothing is
// left at dst on any failure.
func runServerBackup(ctx context.Context, env *Env, f *upFlags, dst string) error {
	if dst == "" {
		dst = backupName()
	}
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("backup: %s exists; choose another file", dst)
	}
	where := f.admin
	if where == "" {
		where = os.Getenv(envAdminURL)
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = c.Backup(ctx, tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("backup of %s: %w", where, apiErr(err))
	}
	sum, err := store.Verify(tmp.Name())
	if err != nil {
		return fmt.Errorf("backup of %s: the copy received is refused, nothing written to %s: %w", where, dst, err)
	}
	// A link, not a rename: it fails if dst appeared meanwhile.
	if err := os.Link(tmp.Name(), dst); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(dst)); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	fmt.Fprintf(env.Stdout, "backup of %s written to %s (%s)\n", where, dst, describe(sum))
	return nil
}

func runBackup(env *Env, file, dst string) error {
	path, err := dataStore(file)
	if err != nil {
		return err
	}
	if dst == "" {
		dst = backupName()
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

// newRestoreCmd is `shoal restore [-c shoal.yaml] FILE`, and `shoal
// restore --cluster [-c server.yaml] [--id ID] [--advertise ADDR] FILE`
// for a server of a cluster.
func newRestoreCmd(env *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "replace the store with a backup, while shoal up (or, with --cluster, shoal server) is stopped",
		Args:  func(*cobra.Command, []string) error { return nil }, // checked below, with an example
	}
	file := cmd.Flags().StringP("config", "c", config.AppFileName, "the app's configuration `file`, to find its data directory (with --cluster: server.yaml, default "+serverConfigFile+")")
	toCluster := cmd.Flags().Bool("cluster", false, "make the stopped shoal server of -c the only server of a new cluster holding the backup (its data_dir must hold no raft state)")
	id := cmd.Flags().String("id", "", "with --cluster: the server's `id` (default: server.yaml's cluster.id)")
	advertise := cmd.Flags().String("advertise", "", "with --cluster: the server's raft `address`, host:port (default: cluster.advertise, else cluster.listen)")
	cmd.RunE = func(sub *cobra.Command, args []string) error {
		if len(args) != 1 {
			return usagef("restore needs one backup file: shoal restore FILE (for example %s)", store.BackupPath(filepath.Join("<data_dir>", storeFile)))
		}
		if !*toCluster {
			if *id != "" || *advertise != "" {
				return usagef("--id and --advertise are for shoal restore --cluster")
			}
			return runRestore(env, *file, args[0])
		}
		path := *file
		if !sub.Flags().Changed("config") {
			path = serverConfigFile
		}
		return runClusterRestore(env, path, *id, *advertise, args[0])
	}
	return cmd
}

// runClusterRestore is `shoal restore --cluster`: daemon.RestoreCluster,
// then the steps that re-form the cluster.
func runClusterRestore(env *Env, path, id, advertise, from string) error {
	file, err := config.LoadServer(path)
	if err != nil {
		return &UsageError{Err: err}
	}
	id, advertise, err = daemon.RestoreCluster(path, file, id, advertise, from)
	if err != nil {
		return err
	}
	sum, err := store.Verify(from)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "restored %s from %s (%s) as a new cluster of one server: %s at %s\n", file.DataDir, from, describe(sum), id, advertise)
	fmt.Fprintf(env.Stdout, "next: start it (shoal server -c %s) with cluster.id %s listening for raft at %s; it leads alone.\n", path, id, advertise)
	fmt.Fprintln(env.Stdout, "then start each other server with an empty data_dir (but its ca/ and admin.token) and add it: shoal servers add ID ADDRESS")
	return nil
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
