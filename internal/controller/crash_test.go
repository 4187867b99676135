package controller

import "testing"

func TestCrashMessagePicksTheLineThatSaysWhy(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lines []string
		want  string
	}{
		{"node", []string{"node:internal/modules/cjs/loader:1228", "  throw err;", "  ^", "",
			"Error: Cannot find module '/srv/app/index.js'", "    at Module._resolveFilename (node:internal/modules/cjs/loader:1225:15)",
			"  code: 'MODULE_NOT_FOUND',", "}", "", "Node.js v22.0.0"}, "Error: Cannot find module '/srv/app/index.js'"},
		{"go panic", []string{"panic: runtime error: index out of range [3] with length 0", "", "goroutine 1 [running]:",
			"main.main()", "\t/src/main.go:9 +0x1d", "exit status 2"}, "panic: runtime error: index out of range [3] with length 0"},
		{"shell", []string{"sh: 1: nodee: not found"}, "sh: 1: nodee: not found"},
		{"no error word", []string{"starting", "bye", ""}, "bye"},
		{"nothing", nil, ""},
	} {
		if got := crashMessage(tc.lines); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
