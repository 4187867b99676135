package config

import "github.com/shoal-dev/shoal/internal/lb"

// Cache is the balancer's asset cache, written the same way in lb.yaml
// (routes[].cache) and shoal.yaml (balancer.cache), decoded and checked
// by this one type. Absent or enabled: true, the route keeps what its
// targets mark shared and long-lived (see lb.Cache); enabled: false turns
// it off.
type Cache struct {
	// Enabled turns the cache off when false; default true.
	Enabled *bool `yaml:"enabled"`
	// MaxSize bounds the bytes the route's cache holds; default 64MiB.
	MaxSize Size `yaml:"max_size"`
	// MaxEntrySize bounds one answer's body; default 8MiB (at most
	// max_size).
	MaxEntrySize Size `yaml:"max_entry_size"`
}

// check reports the problems of c under path through errorf.
func (c *Cache) check(path string, errorf func(path, format string, args ...any)) {
	if c == nil {
		return
	}
	if c.MaxSize < 0 {
		errorf(path+".max_size", "must not be negative, got %d", c.MaxSize)
	}
	if c.MaxEntrySize < 0 {
		errorf(path+".max_entry_size", "must not be negative, got %d", c.MaxEntrySize)
	}
	if c.MaxSize > 0 && c.MaxEntrySize > c.MaxSize {
		errorf(path+".max_entry_size", "must not be more than max_size (%d), got %d", c.MaxSize, c.MaxEntrySize)
	}
}

// LB is c as the balancer's route setting; nil gives the defaults.
func (c *Cache) LB() lb.Cache {
	if c == nil {
		return lb.Cache{}
	}
	return lb.Cache{Off: c.Enabled != nil && !*c.Enabled, MaxBytes: int64(c.MaxSize), MaxEntryBytes: int64(c.MaxEntrySize)}
}
