package e2e

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestUpSecretsStayOffDisk runs `shoal up` on a data dir left world-readable,
// sets a secret with `shoal env set --secret`, and has the app print it: the
// data dir is made 0700 with a warning, the instance's log on disk holds
// no secret and is 0600, and the settings file reaches the app only as
// METEOR_SETTINGS, not inside the artifact.
func TestUpSecretsStayOffDisk(t *testing.T) {
	bin := testenv.BuildShoal(t)
	dir := exampleApp(t, "meteor-like", 1, 2)
	const secret = "e2e-secret-value-42"
	path := filepath.Join(dir, "shoal.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	// The app prints the secret in two writes, then serves.
	doc["run"].(map[string]any)["command"] = `printf 'api key is %.6s' "$API_KEY"; printf '%s\n' "${API_KEY#??????}"; exec node main.js`
	if b, err = yaml.Marshal(doc); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, ".shoal")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(data, 0o755); err != nil {
		t.Fatal(err)
	}

	up := startUp(t, bin, dir)
	warn := regexp.MustCompile(`level=WARN msg="data dir mode tightened.*dir=` + regexp.QuoteMeta(data) + ` was=0755 now=0700`)
	if !warn.MatchString(up.p.Output()) {
		t.Errorf("no warning about the data dir's mode:\n%s", up.p.Output())
	}
	if fi, err := os.Stat(data); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode %v (%v), want 0700", fi.Mode().Perm(), err)
	}

	code, out := runShoal(t, bin, dir, "env", "set", "--secret", "API_KEY="+secret)
	if code != 0 || !strings.Contains(out, "v2 serves") {
		t.Fatalf("shoal env set --secret: exit %d\n%s", code, out)
	}
	st := waitStatus(t, up.client, "v2 in service", func(st client.Status) error {
		if err := inService(1)(st); err != nil {
			return err
		}
		if st.Release != 2 {
			return fmt.Errorf("release %d", st.Release)
		}
		return nil
	})
	logPath := filepath.Join(data, "instances", st.Instances[0].ID, "out.log")
	ctx := testenv.Context(t, 30*time.Second)
	var log []byte
	if err := testenv.WaitFor(ctx, func() error {
		log, err = os.ReadFile(logPath)
		if err == nil && !strings.Contains(string(log), "api key is") {
			err = errors.New("the app has not printed its key yet")
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(log), secret[:6]+secret[6:]) || !strings.Contains(string(log), "api key is [redacted]\n") {
		t.Errorf("log file on disk not redacted:\n%s", log)
	}
	if fi, err := os.Stat(logPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("log file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}

	// The settings reach the app (its page shows the public part) but not
	// as a file of the release it runs in.
	resp, err := http.Get(up.lbURL + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "meteor-like demo") {
		t.Errorf("the page does not show the public settings: METEOR_SETTINGS not passed?\n%.300s", page)
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", st.Instances[0].PID))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cwd, "main.js")); err != nil {
		t.Fatalf("release tree %s: %v", cwd, err)
	}
	if _, err := os.Stat(filepath.Join(cwd, "settings.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("settings.json shipped in the release tree %s (stat: %v)", cwd, err)
	}
}
