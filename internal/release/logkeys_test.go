package release

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
)

// TestLogKeys: an artifact is logged under "digest" (as the controller
// logs it), never under "release", which names a release version in
// every other log line.
func TestLogKeys(t *testing.T) {
	var logs bytes.Buffer
	s, err := Open(t.TempDir(), slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := s.BuildOnce(context.Background(), BuildSpec{Dir: newTree(t)})
	if err != nil {
		t.Fatal(err)
	}
	if got := logs.String(); !strings.Contains(got, "digest="+a.Digest) || strings.Contains(got, "release=") {
		t.Errorf("logs name the artifact %s other than as digest=:\n%s", a.Digest, got)
	}
}
