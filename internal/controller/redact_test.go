package controller

import (
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/internal/config"
)

func TestRedactWriterSplitsOnLines(t *testing.T) {
	env := config.Env{{Name: "API_KEY", Value: "sekrit-value", Secret: true}, {Name: "MODE", Value: "production"}}
	var out strings.Builder
	w := &redactWriter{w: &out, env: env}
	// The secret arrives split across writes; it must still be caught.
	for _, chunk := range []string{"key=sekr", "it-value mode=production\n", "tail sekrit-", "value"} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Contains(out.String(), "tail") {
		t.Fatalf("partial line written before its newline: %q", out.String())
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	const want = "key=[redacted] mode=production\ntail [redacted]"
	if out.String() != want {
		t.Fatalf("got %q, want %q", out.String(), want)
	}
}
