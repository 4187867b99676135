package release

import (
	"errors"
	"fmt"
)

// ErrTooLarge is returned (wrapped) when an artifact would unpack to more
// bytes or entries than Limits allow.
var ErrTooLarge = errors.New("artifact too large")

// Default limits. A Meteor bundle with its node_modules is typically a few
// hundred MB in some tens of thousands of files; the defaults leave an
// order of magnitude of room while stopping an artifact that would fill the
// disk (a 4 GiB file of zeros compresses to about 4 MiB).
const (
	DefaultMaxUnpackedBytes   = 4 << 30
	DefaultMaxUnpackedEntries = 1 << 20
)

// Limits bound what one artifact may unpack to. Packing checks them too, so
// a build whose output is over them fails at build time, not at launch.
// Zero fields take the defaults.
type Limits struct {
	// MaxBytes bounds the total size of the regular files; default 4 GiB.
	MaxBytes int64
	// MaxEntries bounds the number of entries (files, directories, links);
	// default 1,048,576.
	MaxEntries int
}

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxUnpackedBytes
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultMaxUnpackedEntries
	}
	return l
}

// tally counts entries and bytes against Limits.
type tally struct {
	lim     Limits
	entries int
	bytes   int64
}

func (t *tally) add(name string, size int64) error {
	t.entries++
	if t.entries > t.lim.MaxEntries {
		return fmt.Errorf("%w: more than %d entries (at %q)", ErrTooLarge, t.lim.MaxEntries, name)
	}
	if size > t.lim.MaxBytes-t.bytes {
		return fmt.Errorf("%w: more than %d bytes unpacked (at %q, %d bytes)", ErrTooLarge, t.lim.MaxBytes, name, size)
	}
	t.bytes += size
	return nil
}
