package runtime

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

func TestParseStatOwnProcess(t *testing.T) {
	st, err := readStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.PID != os.Getpid() || st.PPID != os.Getppid() || st.StartTime == 0 || st.RSSPages <= 0 || !st.alive() {
		t.Fatalf("stat = %+v", st)
	}
}

func TestParseStatOddCommandName(t *testing.T) {
	line := "42 (a) b (c) d) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 12345 1000000 250 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	st, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	want := procStat{PID: 42, State: 'S', PPID: 1, PGRP: 42, UTime: 7, STime: 3, StartTime: 12345, RSSPages: 250}
	if st != want {
		t.Fatalf("got %+v, want %+v", st, want)
	}
}

func FuzzParseStat(f *testing.F) {
	if b, err := os.ReadFile("/proc/self/stat"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("1 (x) Z 0 1 1"))
	f.Add([]byte("7 ((()) R 1 7 7 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 9 0 3"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseStat(b)
		if err == nil && st.PID <= 0 {
			t.Fatalf("accepted pid %d", st.PID)
		}
	})
}

func FuzzParsePidRecord(f *testing.F) {
	good, _ := json.Marshal(pidRecord{Version: 1, ID: "web-1", PID: 100, PGID: 100, StartTicks: 5, BootID: "b"})
	f.Add(good)
	f.Add([]byte(`{"version":1,"id":"../etc","pid":5,"pgid":5}`))
	f.Add([]byte(`{"version":1,"id":"x","pid":1,"pgid":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parsePidRecord(b)
		if err != nil {
			return
		}
		// Never a record that would make CleanLeftovers signal init, every process (-1) or
		// a path outside the pid directory.
		if r.PGID <= 1 || r.PID <= 1 || !validID(r.ID) || strings.Contains(r.ID, "/") {
			t.Fatalf("accepted %+v", r)
		}
	})
}

func TestShellCommand(t *testing.T) {
	for in, want := range map[string]string{
		"node main.js":              "exec node main.js",
		"  ./bin/app --port $PORT ": "exec ./bin/app --port $PORT",
		"npm start":                 "exec npm start",
		"FOO=1 node x":              "FOO=1 node x",
		"node a && node b":          "node a && node b",
		"cd web; node x":            "cd web; node x",
		"node x > log":              "node x > log",
		"if true; then a; fi":       "if true; then a; fi",
		"exec node x":               "exec node x",
		"echo $(id)":                "echo $(id)",
	} {
		if got := shellCommand(in); got != want {
			t.Errorf("shellCommand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{
		"web-v3-7f2a": true, "a.b_c": true, "": false, ".": false, "..": false, ".hidden": false,
		"a/b": false, strings.Repeat("x", 129): false, "sp ace": false,
	} {
		if validID(id) != want {
			t.Errorf("validID(%q) = %v", id, !want)
		}
	}
}
