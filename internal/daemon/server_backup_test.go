package daemon

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/store"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestServerBackup: GET /v1/backup of a server alone is a store file that
// store.Verify accepts and that holds the join token created before the
// call; it needs the admin token; no temporary file is left in data_dir.
func TestServerBackup(t *testing.T) {
	dir := t.TempDir()
	cfg := serverConfig(t, dir, "127.0.0.1:0")
	ts := startServer(t, cfg)
	ctx := testenv.Context(t, 30*time.Second)
	c := ts.client(t, "")
	tok, err := c.JoinToken(ctx, api.RoleAgent, "10m")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := c.Backup(ctx, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil || n == 0 {
		t.Fatalf("backup: %d bytes, %v", n, err)
	}
	if _, err := store.Verify(path); err != nil {
		t.Fatalf("the backup is refused: %v", err)
	}
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := st.Tokens().List()
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(tokens) != 1 || tokens[0].ID != tok.ID {
		t.Fatalf("tokens in the backup: %+v, want the one created, %s", tokens, tok.ID)
	}
	ents, err := os.ReadDir(cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if filepath.Ext(e.Name()) == ".db" && e.Name() != "shoal.db" {
			t.Errorf("data_dir keeps %s after the backup", e.Name())
		}
	}

	bad := client.New(ts.ready.AdminURL, "not-the-token")
	t.Cleanup(bad.HTTP.CloseIdleConnections)
	if _, err := bad.Backup(ctx, f); !client.IsStatus(err, 401) {
		t.Fatalf("backup with a wrong token: %v, want 401", err)
	}
}
