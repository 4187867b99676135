package rollout

import (
	"fmt"
	"strconv"
	"strings"
)

// maxQuantity bounds a count so that no arithmetic on counts overflows.
const maxQuantity = 100000

// Quantity is a number of instances, either absolute ("2") or a
// percentage of the desired count ("25%"). The zero value is "not set":
// the [Policy] field it sits in takes its default. Build one with [Count],
// [Percent] or [ParseQuantity]. It is a value; copies are independent.
type Quantity struct {
	n       int
	percent bool
	set     bool
}

// Count returns the absolute quantity n. n must be in [0, 100000] for
// the quantity to validate.
func Count(n int) Quantity { return Quantity{n: n, set: true} }

// Percent returns the quantity p% of the desired count. p must be in
// [0, 100] for the quantity to validate.
func Percent(p int) Quantity { return Quantity{n: p, percent: true, set: true} }

// ParseQuantity parses "3" or "25%". The empty string gives the unset
// zero Quantity. Surrounding spaces are ignored; anything else (signs,
// fractions, "%" alone, a percentage over 100) is an error.
func ParseQuantity(s string) (Quantity, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Quantity{}, nil
	}
	num, pct := strings.CutSuffix(s, "%")
	if num == "" || strings.IndexFunc(num, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return Quantity{}, fmt.Errorf("quantity %q: want a whole number of instances (2) or a percentage (25%%)", s)
	}
	n, err := strconv.Atoi(num)
	if err != nil || n > maxQuantity {
		return Quantity{}, fmt.Errorf("quantity %q: too large", s)
	}
	if pct {
		if n > 100 {
			return Quantity{}, fmt.Errorf("quantity %q: a percentage must be at most 100%%", s)
		}
		return Percent(n), nil
	}
	return Count(n), nil
}

// IsZero reports whether q is unset.
func (q Quantity) IsZero() bool { return !q.set }

// IsPercent reports whether q is a percentage of the desired count.
func (q Quantity) IsPercent() bool { return q.percent }

// Value returns the number (of instances, or percent).
func (q Quantity) Value() int { return q.n }

// String returns q in the form ParseQuantity reads: "2", "25%", or ""
// when unset.
func (q Quantity) String() string {
	switch {
	case !q.set:
		return ""
	case q.percent:
		return strconv.Itoa(q.n) + "%"
	}
	return strconv.Itoa(q.n)
}

// MarshalText encodes q as [Quantity.String] does.
func (q Quantity) MarshalText() ([]byte, error) { return []byte(q.String()), nil }

// UnmarshalText decodes what [ParseQuantity] accepts.
func (q *Quantity) UnmarshalText(b []byte) error {
	v, err := ParseQuantity(string(b))
	if err != nil {
		return err
	}
	*q = v
	return nil
}

func (q Quantity) validate() error {
	switch {
	case q.n < 0:
		return fmt.Errorf("%s is negative", q)
	case q.percent && q.n > 100:
		return fmt.Errorf("%s is more than 100%%", q)
	case !q.percent && q.n > maxQuantity:
		return fmt.Errorf("%s is more than %d", q, maxQuantity)
	}
	return nil
}

// of resolves q against desired instances, rounding a percentage up or
// down. q must be valid and desired in [0, maxQuantity].
func (q Quantity) of(desired int, up bool) int {
	if !q.percent {
		return q.n
	}
	v := desired * q.n
	if up {
		return (v + 99) / 100
	}
	return v / 100
}
