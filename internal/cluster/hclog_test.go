package cluster

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// TestHCLogger: raft's log lines reach slog with their level, name and
// keys; loggers derived concurrently do not share their arguments.
func TestHCLogger(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	l := newHCLogger(slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelInfo})))
	base := l.Named("raft").With("peer", "b")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			base.With("n", i).Warn("failed to contact", "time", "1s")
		}()
	}
	wg.Wait()
	base.Debug("hidden")
	base.Log(hclog.Error, "stepping down")
	out := buf.String()
	for _, want := range []string{"level=WARN msg=\"failed to contact\" part=raft component=raft peer=b n=", "level=ERROR msg=\"stepping down\"", "time=1s"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "hidden") || strings.Count(out, "failed to contact") != 8 {
		t.Errorf("log:\n%s", out)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}
