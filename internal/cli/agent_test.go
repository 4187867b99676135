package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A problem in agent.yaml exits 2 and names file:line:col.
func TestAgentConfigProblemExits2(t *testing.T) {
	f := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(f, []byte("server: https://10.0.0.1:7440\nadvertise: nowhere\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "agent", "-c", f)
	if code != ExitUsage || !strings.Contains(out+errs, f+":2:") || !strings.Contains(out+errs, "advertise") {
		t.Fatalf("exit %d, want %d and %s:2: naming advertise in:\n%s%s", code, ExitUsage, f, out, errs)
	}
	if code, _, _ := runCLI(t, "agent", "-c", f, "extra"); code != ExitUsage {
		t.Fatalf("an extra argument: exit %d, want %d", code, ExitUsage)
	}
}
