package e2e

import (
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/pool"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestUpStickySecretFile: with balancer.sticky.secret_file, shoal up signs
// its sticky cookies with that file's key (as lb.yaml's secret_file does,
// so that balancers given the same file accept each other's pins), and
// the key file is not packed into the release.
func TestUpStickySecretFile(t *testing.T) {
	bin := testenv.BuildShoal(t)
	dir := exampleApp(t, "meteor-like", 1, 1)
	const key = "0123456789abcdef0123456789abcdef"
	if err := os.WriteFile(filepath.Join(dir, "sticky.key"), []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	editYAML(t, dir, func(doc map[string]any) {
		b := doc["balancer"].(map[string]any)
		b["sticky"] = map[string]any{"cookie": "shoal_sticky", "ttl": "1h", "secret_file": "sticky.key"}
	})
	up := startUp(t, bin, dir)
	defer stopUp(t, up)

	ctx := testenv.Context(t, 30*time.Second)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, up.lbURL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var value string
	for _, c := range resp.Cookies() {
		if c.Name == "shoal_sticky" {
			value = c.Value
		}
	}
	if value == "" {
		t.Fatalf("no shoal_sticky cookie in %d %v", resp.StatusCode, resp.Header)
	}
	if _, _, err := pool.ParseCookie([]byte(key), value, time.Now()); err != nil {
		t.Fatalf("cookie %q is not signed with the key of secret_file: %v", value, err)
	}

	// The app folder is shipped whole (no build section), but not the key:
	// the unpacked release under the data dir has the app's main.js and
	// no sticky.key.
	shipped := false
	err = filepath.WalkDir(filepath.Join(dir, ".shoal"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch d.Name() {
		case "main.js":
			shipped = true
		case "sticky.key":
			t.Errorf("the sticky key was shipped: %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !shipped {
		t.Fatal("no unpacked release (main.js) under the data dir: the check above saw nothing")
	}
}
