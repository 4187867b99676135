package controller

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/config"
)

// maxCrashMessage bounds api.Crash.Message (a minified stack can be one line).
const maxCrashMessage = 300

// errorLine matches an output line that reads like the reason of a crash:
// "Error: Cannot find module", "panic: ...", "sh: 1: node: not found",
// "ModuleNotFoundError: ...", "listen EADDRINUSE". Indented lines (stack
// frames, source excerpts) are not considered.
var errorLine = regexp.MustCompile(`^\S.*(?i:error|exception|panic|fatal|not found|cannot|can't|denied|refused|eaddrinuse|no such file)`)

// crashMessage picks the line of lines that most likely says why the
// process ended: the last that reads like an error, else the last
// non-empty one.
func crashMessage(lines []string) string {
	pick := ""
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimRight(lines[i], " \t\r")
		if l == "" {
			continue
		}
		if pick == "" {
			pick = l
		}
		if errorLine.MatchString(l) {
			pick = l
			break
		}
	}
	if len(pick) > maxCrashMessage {
		pick = pick[:maxCrashMessage] + "..."
	}
	return pick
}

// redactLines redacts each line with env's secret values.
func redactLines(env config.Env, lines []string) []string {
	if len(lines) == 0 {
		return nil
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = env.Redact(l)
	}
	return out
}

// exitWords is Exit.Code or Exit.Signal in a few words.
func exitWords(e Exit) string {
	if e.Signal != "" {
		return "killed by " + e.Signal
	}
	return fmt.Sprintf("exit %d", e.Code)
}

// console writes a crash report for people to Options.Console: the
// instance, the exit, and the last lines of its output. It is called
// without c.mu, once per new crash reason of a release.
func (c *Controller) console(cr api.Crash) {
	if c.o.Console == nil {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "shoal up: instance %s of release v%d crashed: %s\n", cr.Instance, cr.Release, cr.Summary())
	if len(cr.Logs) > 0 {
		fmt.Fprintf(&b, "shoal up: its last log lines (shoal logs %s shows more):\n", cr.Instance)
		for _, l := range cr.Logs {
			fmt.Fprintf(&b, "  | %s\n", l)
		}
	} else {
		fmt.Fprintln(&b, "shoal up: it printed nothing")
	}
	fmt.Fprintln(&b, "shoal up: it will be relaunched, with a growing delay while it keeps crashing; this is printed again only if the reason changes")
	c.o.Console.Write([]byte(b.String()))
}

// crashNoteLocked is what a crash-loop event adds to the backoff message:
// "; last: exit 1 after 0.2s: Error: ...", or "" without a crash.
func (c *Controller) crashNoteLocked(release int) string {
	cr, ok := c.crashes[release]
	if !ok {
		return ""
	}
	return "; last: " + cr.Summary()
}
