package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestDaemonHelpAndLogFlags: -h and --help on `shoal up` and `shoal lb`
// print their usage, with the shared logging flags, and exit 0; a bad
// logging flag value is a usage error (exit 2) naming the flag, before
// anything starts.
func TestDaemonHelpAndLogFlags(t *testing.T) {
	for _, verb := range []string{"up", "lb"} {
		for _, h := range []string{"-h", "--help"} {
			var out, errb bytes.Buffer
			if code := Run(context.Background(), []string{verb, h}, &out, &errb); code != ExitOK {
				t.Errorf("shoal %s %s: exit %d, want 0\n%s", verb, h, code, errb.String())
			}
			for _, want := range []string{"usage: shoal " + verb, "-log-format", "-log-level"} {
				if !strings.Contains(errb.String(), want) {
					t.Errorf("shoal %s %s: usage lacks %q:\n%s", verb, h, want, errb.String())
				}
			}
		}
		var out, errb bytes.Buffer
		dir := t.TempDir()
		args := []string{verb, "-c", dir + "/none.yaml", "--log-format", "xml"}
		if code := Run(context.Background(), args, &out, &errb); code != ExitUsage || !strings.Contains(errb.String(), `-log-format "xml"`) {
			t.Errorf("shoal %s --log-format xml: exit %d, want 2 naming the flag\n%s", verb, code, errb.String())
		}
	}
}
