package cli

import (
	"flag"
	"io"
	"slices"
	"testing"
)

func TestParseInterleaved(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	wait := fs.Bool("wait", false, "")
	timeout := fs.Duration("timeout", 0, "")
	pos, err := parseInterleaved(fs, []string{"app", "-wait", "127.0.0.1:1", "-timeout", "5s"})
	if err != nil || !slices.Equal(pos, []string{"app", "127.0.0.1:1"}) || !*wait || timeout.Seconds() != 5 {
		t.Fatalf("pos %v wait %v timeout %v err %v", pos, *wait, *timeout, err)
	}
	if _, err := parseInterleaved(fs, []string{"app", "-bogus"}); err == nil {
		t.Fatal("unknown flag accepted")
	}
}

func TestAdminURL(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:9090":        "http://127.0.0.1:9090",
		":9090":                 "http://127.0.0.1:9090",
		"0.0.0.0:9090":          "http://127.0.0.1:9090",
		"[::]:9090":             "http://127.0.0.1:9090",
		"http://10.0.0.1:9090":  "http://10.0.0.1:9090",
		"https://admin.example": "https://admin.example",
	} {
		if got := adminURL(in); got != want {
			t.Errorf("adminURL(%q) = %q, want %q", in, got, want)
		}
	}
}
