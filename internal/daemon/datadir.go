package daemon

import (
	"fmt"
	"log/slog"
	"os"
)

// dataDirMode is the mode of `shoal up`'s data directory. It holds the
// store (with every secret of every release), the admin token, the
// artifacts and the instances' logs: only Shoal's user may enter it.
const dataDirMode = 0o700

// prepareDataDir creates the data directory with dataDirMode, or, when it
// exists with a mode that lets group or others in, sets dataDirMode and
// says so with a warning naming the directory, its old mode and the new
// one. os.MkdirAll alone leaves an existing directory as it is.
func prepareDataDir(dir string, log *slog.Logger) error {
	if err := os.MkdirAll(dir, dataDirMode); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("data dir %s is not a directory", dir)
	}
	if was := fi.Mode().Perm(); was&0o077 != 0 {
		if err := os.Chmod(dir, dataDirMode); err != nil {
			return fmt.Errorf("data dir: tighten mode %v: %w", was, err)
		}
		log.Warn("data dir mode tightened: it holds secrets", "dir", dir,
			"was", fmt.Sprintf("%#o", was), "now", fmt.Sprintf("%#o", dataDirMode))
	}
	return nil
}
