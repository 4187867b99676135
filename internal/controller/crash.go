package controller

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/internal/config"
)

// Crash is the last exit that nobody asked for of an instance of one
// release: why it ended and what it printed last, so that an app that
// fails on boot says why on the console, in `shoal status` and in its
// events, not only in a log file.
type Crash struct {
	Instance string `json:"instance"`
	Release  int    `json:"release"`
	// Exit is "exit 1" or "killed by SIGSEGV".
	Exit string `json:"exit"`
	// UptimeSeconds is the time from the process's start (or from its
	// launch, when the exit was reported first) to its exit.
	UptimeSeconds float64 `json:"uptime_seconds"`
	// Message is the line of its output that most likely says why (the
	// last one that reads like an error, else the last one); empty when
	// it printed nothing.
	Message string `json:"message,omitempty"`
	// Logs are the last lines of its output, secrets redacted.
	Logs []string `json:"logs,omitempty"`
	// InARow counts the crashes of the release in a row (the crash-loop
	// count); 0 once an instance of it has been stable.
	InARow int       `json:"in_a_row"`
	At     time.Time `json:"at"`
}

// Summary is one line: "exit 1 after 0.2s: Error: Cannot find module ...".
func (cr Crash) Summary() string {
	s := fmt.Sprintf("%s after %s", cr.Exit, roundUptime(time.Duration(cr.UptimeSeconds*float64(time.Second))))
	if cr.Message != "" {
		s += ": " + cr.Message
	}
	return s
}

func roundUptime(d time.Duration) time.Duration {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond)
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond)
	case d < time.Hour:
		return d.Round(time.Second)
	default:
		return d.Round(time.Minute)
	}
}

// maxCrashMessage bounds Crash.Message (a minified stack can be one line).
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
func (c *Controller) console(cr Crash) {
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
