package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written with a unit in the file ("500ms",
// "5s", "2m"). A bare number is rejected so that "30" is never read as 30ns,
// and a space inside ("1 s") is rejected with a message that says to
// remove it.
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "0" {
		*d = 0
		return nil
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return errNoUnit
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		// "1 s" or "1 m 30 s": Go's durations take no spaces; say so
		// rather than asking for a unit that is there.
		if joined := strings.Join(strings.Fields(s), ""); joined != s {
			if _, jerr := time.ParseDuration(joined); jerr == nil {
				return fmt.Errorf("invalid duration %q: remove the space: %s", s, joined)
			}
		}
		return fmt.Errorf("invalid duration %q (use a unit, such as 500ms, 5s or 2m)", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Size is a byte count written as a number with an optional unit: 512,
// "64KiB", "1MiB", "10MB" (SI units are powers of 1000, IEC units of 1024).
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"B", 1},
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Size) UnmarshalText(b []byte) error {
	str := strings.TrimSpace(string(b))
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(str, u.suffix) {
			str, mult = strings.TrimSpace(strings.TrimSuffix(str, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(str, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return fmt.Errorf("invalid size %q (use bytes or a unit: 64KiB, 1MiB, 10MB)", string(b))
	}
	*s = Size(n * mult)
	return nil
}
