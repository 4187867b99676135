package config

import (
	"fmt"

	"github.com/shoal-dev/shoal/internal/lb"
)

// Compression is compression at the balancer, written the same way in
// lb.yaml (routes[].compression) and shoal.yaml (balancer.compression),
// decoded and checked by this one type. Absent, a route compresses text
// types (see lb.DefaultCompressTypes) for clients that accept brotli,
// zstd or gzip.
type Compression struct {
	// Enabled turns compression on or off; default true.
	Enabled *bool `yaml:"enabled"`
	// Types are the media types compressed: "text/html", or "text/*" for
	// every subtype of a type; parameters (charset) are ignored. Default:
	// text/*, JavaScript, JSON, XML, SVG, WebAssembly and a few more
	// (docs/lb-configuration.md lists them). Setting it replaces the
	// default list.
	Types []string `yaml:"types"`
	// MinSize is the smallest body compressed when the target gives its
	// length; default 1KiB. A body of unknown length is compressed.
	MinSize Size `yaml:"min_size"`
	// Level is 1 (fastest, the default) to 9 (smallest), as gzip's levels
	// (nginx's gzip_comp_level); zstd and brotli use the matching speed.
	Level int `yaml:"level"`
}

// check reports the problems of c under path through errorf.
func (c *Compression) check(path string, errorf func(path, format string, args ...any)) {
	if c == nil {
		return
	}
	if c.Level < 0 || c.Level > 9 {
		errorf(path+".level", "must be 1 to 9, got %d", c.Level)
	}
	if c.Types != nil && len(c.Types) == 0 {
		errorf(path+".types", "must list at least one type (set enabled: false to compress nothing)")
	}
	for i, t := range c.Types {
		if err := lb.CheckMediaRange(t); err != nil {
			errorf(fmt.Sprintf("%s.types[%d]", path, i), "%v", err)
		}
	}
}

// LB is c as the balancer's route setting; nil gives the defaults.
func (c *Compression) LB() lb.Compression {
	if c == nil {
		return lb.Compression{}
	}
	return lb.Compression{
		Off:     c.Enabled != nil && !*c.Enabled,
		Types:   append([]string(nil), c.Types...),
		MinSize: int64(c.MinSize),
		Level:   c.Level,
	}
}
