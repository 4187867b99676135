package cli

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/internal/api"
)

// TestServerBackupRefusesADamagedCopy: `shoal backup --admin` refuses an
// answer that is not a whole store file (here, bytes of the right media
// type that are no bbolt file), exits non-zero, and leaves neither the
// output file nor a temporary file behind.
func TestServerBackupRefusesADamagedCopy(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/backup" || r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "no", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", api.BackupContentType)
		w.Write([]byte(strings.Repeat("not a store file ", 512)))
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv(envToken, "tok")
	dst := filepath.Join(dir, "cluster.db")
	code, out, errs := runCLI(t, "backup", "--admin", srv.URL, "-o", dst)
	if code == ExitOK || !strings.Contains(errs, "refused") || !strings.Contains(errs, "nothing written to "+dst) {
		t.Fatalf("shoal backup of a damaged copy: exit %d\n%s%s", code, out, errs)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Fatalf("a refused backup left %s", ents[0].Name())
	}
}
