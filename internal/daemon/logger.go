package daemon

import (
	"fmt"
	"io"
	"log/slog"
)

// Log formats and levels accepted by NewLogger, as `shoal up` and `shoal
// lb` take them in --log-format and --log-level.
const (
	LogFormatText = "text"
	LogFormatJSON = "json"
)

// NewLogger returns the logger of a daemon writing to w: format is "text"
// (logfmt-like key=value) or "json", level is "debug", "info", "warn" or
// "error" (case-insensitive, as slog.Level parses it). An unknown format or
// level is an error naming the flag and the accepted values.
func NewLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case LogFormatText:
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case LogFormatJSON:
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("-log-format %q: want text or json", format)
}
