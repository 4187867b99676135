package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// bootFails is an app whose command fails at once, the way node does
// when its entry file is missing, and prints a secret on the way.
const bootFails = `echo "booting with key $API_KEY on port $PORT"
echo "node:internal/modules/cjs/loader:1228" >&2
echo "Error: Cannot find module '/srv/app/index.js'" >&2
echo "    at Module._resolveFilename (node:internal/modules/cjs/loader:1225:15)" >&2
echo "Node.js v22.0.0" >&2
exit 1
`

// TestUpCrashOnBootSaysWhy checks that an app that crashes on boot says
// why on shoal up's console (once, not once per crash), in shoal status
// and in shoal events, with the exit and its log line, secrets redacted.
func TestUpCrashOnBootSaysWhy(t *testing.T) {
	bin := testenv.BuildShoal(t)
	dir := t.TempDir()
	files := map[string]string{
		"boot.sh":     bootFails,
		"secrets.env": "API_KEY=s3cr3t-value\n",
		"shoal.yaml": "app: crashy\nrun:\n  command: sh boot.sh\n  secrets_file: secrets.env\n" +
			"balancer:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "up")
	cmd.Dir = dir
	up := testenv.StartCmd(t, cmd)

	// The console: the exit, the uptime, the line that says why and the
	// last lines, once.
	ctx := testenv.Context(t, 60*time.Second)
	console := regexp.MustCompile(`^shoal up: instance (\S+) of release v1 crashed: exit 1 after [0-9.]+m?s: Error: Cannot find module '/srv/app/index.js'$`)
	if _, err := up.WaitForLine(ctx, console); err != nil {
		t.Fatalf("no crash report on the console: %v\n%s", err, up.Output())
	}
	if _, err := up.WaitForLine(ctx, regexp.MustCompile(`^  \| Node\.js v22\.0\.0$`)); err != nil {
		t.Fatalf("no log lines on the console: %v", err)
	}

	// shoal status: the crash loop with its reason and log lines.
	var status string
	err := testenv.WaitFor(ctx, func() error {
		out, err := shoalOutput(dir, bin, "status")
		status = out
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		for _, want := range []string{"crash loop (", "exit 1 after", "Error: Cannot find module '/srv/app/index.js'",
			"backoff: release v1 crashed", "  | Node.js v22.0.0"} {
			if !strings.Contains(out, want) {
				return fmt.Errorf("status lacks %q:\n%s", want, out)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// shoal events: the failed state and the backoff carry the reason.
	events, err := shoalOutput(dir, bin, "events")
	if err != nil {
		t.Fatalf("events: %v\n%s", err, events)
	}
	failed := regexp.MustCompile(`failed.*process exited with status 1 after [0-9.]+m?s: Error: Cannot find module '/srv/app/index.js'`)
	backoff := regexp.MustCompile(`release v1 crashed \d+ times in a row; next launch in \S+; last: exit 1 after [0-9.]+m?s: Error: Cannot find module`)
	if !failed.MatchString(events) || !backoff.MatchString(events) {
		t.Errorf("events lack the crash reason:\n%s", events)
	}

	// The admin API names its app, even to a caller without the token.
	url, err := os.ReadFile(filepath.Join(dir, ".shoal", "admin.url"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(strings.TrimSpace(string(url)) + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Shoal-App") != "crashy" {
		t.Errorf("admin API without a token: %d, Shoal-App %q", resp.StatusCode, resp.Header.Get("Shoal-App"))
	}

	up.Signal(syscall.SIGINT)
	if code, err := up.Wait(testenv.Context(t, 30*time.Second)); err != nil || code != 0 {
		t.Fatalf("shoal up: exit %d, %v", code, err)
	}
	out := up.Output()
	// Several crashes, one report on the console.
	if n := strings.Count(out, "of release v1 crashed:"); n != 1 {
		t.Errorf("the crash report was written %d times, want once:\n%s", n, out)
	}
	if n := strings.Count(out, "to=failed"); n < 2 {
		t.Errorf("%d crashes, want at least 2:\n%s", n, out)
	}
	for name, text := range map[string]string{"console": out, "status": status, "events": events} {
		if strings.Contains(text, "s3cr3t-value") {
			t.Errorf("the secret is in the %s:\n%s", name, text)
		}
	}
}

// shoalOutput runs a client verb of shoal in dir and returns its combined
// output.
func shoalOutput(dir, bin string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}
