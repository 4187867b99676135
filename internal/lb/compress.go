package lb

import (
	"fmt"
	"strings"
)

// Compression at the balancer (issue 18): both request paths ask one
// function, compressFor, whether an answer is compressed and with what,
// and build the changed head from its result, so they cannot drift. The
// encoders themselves are in encoder.go.

// Compression is how a route compresses its answers. The zero value
// compresses the DefaultCompressTypes with gzip, zstd or brotli, as the
// client accepts, from DefaultCompressMinSize bytes on, at level 1.
type Compression struct {
	// Off turns compression off for the route: answers pass as the
	// target sent them, Vary included.
	Off bool
	// Types are the media types compressed, without parameters, matched
	// without case: "text/html", or "text/*" for every subtype of one
	// type. Nil means DefaultCompressTypes.
	Types []string
	// MinSize is the smallest body compressed, in bytes, when the target
	// says its length (Content-Length); a body of unknown length is
	// always compressed. Zero means DefaultCompressMinSize.
	MinSize int64
	// Level is 1 (fastest, the default; zero means 1) to 9 (smallest),
	// gzip's levels as nginx's gzip_comp_level names them; zstd and
	// brotli take the matching speed class (see encoderLevel).
	Level int
}

// Defaults of Compression.
const (
	DefaultCompressMinSize = 1024
	DefaultCompressLevel   = 1
)

// DefaultCompressTypes are the media types a route compresses unless told
// otherwise: text, and the application types that are text (scripts,
// JSON, XML, SVG, WebAssembly's compressible binary). Images, video,
// fonts in WOFF and archives are compressed already.
var DefaultCompressTypes = []string{
	"text/*",
	"application/javascript", "application/x-javascript", "application/ecmascript",
	"application/json", "application/ld+json", "application/manifest+json", "application/geo+json",
	"application/xml", "application/xhtml+xml", "application/rss+xml", "application/atom+xml",
	"application/wasm", "image/svg+xml", "image/x-icon", "font/ttf", "font/otf",
}

// checkCompression reports what is wrong with c, one error per problem.
func checkCompression(c Compression) []error {
	var errs []error
	if c.Level < 0 || c.Level > 9 {
		errs = append(errs, fmt.Errorf("level: must be 1 to 9, got %d", c.Level))
	}
	if c.MinSize < 0 {
		errs = append(errs, fmt.Errorf("min_size: must not be negative, got %d", c.MinSize))
	}
	for i, t := range c.Types {
		if err := CheckMediaRange(t); err != nil {
			errs = append(errs, fmt.Errorf("types[%d]: %w", i, err))
		}
	}
	return errs
}

// CheckMediaRange checks one entry of Compression.Types: type/subtype or
// type/*, tokens without parameters.
func CheckMediaRange(t string) error {
	typ, sub, ok := strings.Cut(t, "/")
	if !ok || !isToken(typ) || typ == "*" || (sub != "*" && !isToken(sub)) {
		return fmt.Errorf("%q is not a media type such as text/html or text/*", t)
	}
	return nil
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$&-^_.+", c) >= 0) {
			return false
		}
	}
	return true
}

// compressRule is a route's Compression, compiled once per table.
type compressRule struct {
	off     bool
	exact   []string // lower-case type/subtype
	anySub  []string // lower-case "type/" of the type/* entries
	minSize int64
	level   int
}

// compressRules builds the rules of a table's routes, one rule shared by
// every route whose Compression lists no types of its own and has equal
// other fields (nearly all of them): a rule is immutable once built, and
// 10,000 host routes need not hold 10,000 copies of the default type list
// (issue 15: memory per route).
type compressRules map[compressRuleKey]*compressRule

type compressRuleKey struct {
	off     bool
	minSize int64
	level   int
}

func (rs compressRules) rule(c Compression) *compressRule {
	if c.Types != nil {
		return newCompressRule(c)
	}
	k := compressRuleKey{c.Off, c.MinSize, c.Level}
	r := rs[k]
	if r == nil {
		r = newCompressRule(c)
		rs[k] = r
	}
	return r
}

func newCompressRule(c Compression) *compressRule {
	r := &compressRule{off: c.Off, minSize: c.MinSize, level: c.Level}
	if r.minSize == 0 {
		r.minSize = DefaultCompressMinSize
	}
	if r.level == 0 {
		r.level = DefaultCompressLevel
	}
	types := c.Types
	if types == nil {
		types = DefaultCompressTypes
	}
	for _, t := range types {
		t = strings.ToLower(t)
		if p, ok := strings.CutSuffix(t, "/*"); ok {
			r.anySub = append(r.anySub, p+"/")
		} else {
			r.exact = append(r.exact, t)
		}
	}
	return r
}

// compressible reports whether a Content-Type value names a type the
// rule compresses (parameters ignored).
func (r *compressRule) compressible(ct string) bool {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.TrimSpace(ct)
	for _, t := range r.exact {
		if strings.EqualFold(ct, t) {
			return true
		}
	}
	for _, p := range r.anySub {
		if len(ct) > len(p) && strings.EqualFold(ct[:len(p)], p) {
			return true
		}
	}
	return false
}

// Encoding is a content coding the balancer compresses with.
type Encoding uint8

// The codings, in the balancer's order of preference (a tie in the
// client's q-values goes to the later one here).
const (
	EncIdentity Encoding = iota // not compressed
	EncGzip
	EncZstd
	EncBrotli
	numEncodings
)

var encodingNames = [numEncodings]string{"identity", "gzip", "zstd", "br"}

// String is the coding's name in Content-Encoding.
func (e Encoding) String() string {
	if e < numEncodings {
		return encodingNames[e]
	}
	return "Encoding(" + fmt.Sprint(uint8(e)) + ")"
}

// acceptEncoding reads Accept-Encoding values (RFC 9110 12.5.3). Its zero
// value has seen none; add each field value, then choose.
type acceptEncoding struct {
	q    [numEncodings]int16 // q-value x1000 of each coding named; -1 not named
	star int16               // q-value x1000 of "*"; -1 not named
	init bool
}

// add reads one Accept-Encoding field value. Elements it cannot read (a
// bad q-value) are skipped.
func (a *acceptEncoding) add(v string) {
	if !a.init {
		a.q = [numEncodings]int16{-1, -1, -1, -1}
		a.star, a.init = -1, true
	}
	for v != "" {
		var el string
		el, v, _ = strings.Cut(v, ",")
		name, params, _ := strings.Cut(el, ";")
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		q, ok := qValue(params)
		if !ok {
			continue
		}
		switch {
		case name == "*":
			a.star = q
		case strings.EqualFold(name, "gzip"), strings.EqualFold(name, "x-gzip"):
			a.q[EncGzip] = max(a.q[EncGzip], q)
		case strings.EqualFold(name, "zstd"):
			a.q[EncZstd] = max(a.q[EncZstd], q)
		case strings.EqualFold(name, "br"):
			a.q[EncBrotli] = max(a.q[EncBrotli], q)
		}
	}
}

// choose returns the coding with the highest q-value above 0, the
// balancer's preference (br, zstd, gzip) breaking ties; a coding not
// named takes the q-value of "*". EncIdentity when none is acceptable.
func (a *acceptEncoding) choose() Encoding {
	if !a.init {
		return EncIdentity
	}
	best, bestQ := EncIdentity, int16(0)
	for e := EncGzip; e < numEncodings; e++ {
		q := a.q[e]
		if q < 0 {
			q = a.star
		}
		if q > 0 && q >= bestQ {
			best, bestQ = e, q
		}
	}
	return best
}

// qValue reads the parameters after a coding (";q=0.5"); no q is 1. It
// reports false for a q-value that is not one (RFC 9110 12.4.2).
func qValue(params string) (int16, bool) {
	q := int16(1000)
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		k, v, _ := strings.Cut(p, "=")
		if !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		v = strings.TrimSpace(v)
		if v == "" || len(v) > 5 || (v[0] != '0' && v[0] != '1') || len(v) > 1 && v[1] != '.' {
			return 0, false
		}
		n := int16(v[0]-'0') * 1000
		scale := int16(100)
		for i := 2; i < len(v); i++ {
			c := v[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			n += int16(c-'0') * scale
			scale /= 10
		}
		if n > 1000 {
			return 0, false
		}
		q = n
	}
	return q, true
}

// answerFacts are what compressFor reads of one exchange: the request's
// and the target's answer's, from a parsed head (fast path) or from
// net/http's types. Strings may view a connection's buffer: nothing
// keeps them.
type answerFacts struct {
	head    bool // a HEAD request
	upgrade bool // the request asked for an upgrade
	status  int
	// contentType is the answer's first Content-Type value.
	contentType string
	// encoded: the answer has a Content-Encoding already.
	encoded bool
	// ranged: a Content-Range (a part of the representation).
	ranged bool
	// noTransform: Cache-Control names no-transform (RFC 9111 5.2.2.6).
	noTransform bool
	// varies: Vary names Accept-Encoding or "*" already.
	varies bool
	// trailers: the answer announces trailers (Trailer), which may say
	// something of the body as sent (a checksum, a length).
	trailers bool
	// length is Content-Length, -1 when the target did not say.
	length int64
}

// compressFor decides, for both paths, what the balancer does to an
// answer: the coding it compresses with (EncIdentity for none) and
// whether it adds "Vary: Accept-Encoding". accept is the client's choice
// (acceptEncoding.choose), EncIdentity when it accepts none.
//
// Vary is added to every answer of a compressible type on a route that
// compresses, whatever this client accepts and whether or not this
// answer is compressed (a small body, a HEAD), so that caches keep the
// encodings apart; a target's own Vary that covers it is left as it is.
// Never compressed: a HEAD, a 1xx, 204, 206 or 304, a Content-Range, an
// answer the target encoded, one marked no-transform, a body under the
// minimum size by its Content-Length, one that announces trailers, or an
// upgrade.
func (r *compressRule) compressFor(accept Encoding, f *answerFacts) (enc Encoding, vary bool) {
	if r == nil || r.off || f.upgrade || f.status < 200 || f.contentType == "" || !r.compressible(f.contentType) {
		return EncIdentity, false
	}
	vary = !f.varies
	switch {
	case accept == EncIdentity, f.head, f.encoded, f.ranged, f.noTransform, f.trailers,
		f.status == 204, f.status == 206, f.status == 304,
		f.length >= 0 && f.length < r.minSize:
		return EncIdentity, vary
	}
	return accept, vary
}

// hasToken reports whether the comma-separated list v names token
// (without case; parameters after "=" ignored: "no-transform").
func hasToken(v, token string) bool {
	for v != "" {
		var el string
		el, v, _ = strings.Cut(v, ",")
		el, _, _ = strings.Cut(el, "=")
		if strings.EqualFold(strings.TrimSpace(el), token) {
			return true
		}
	}
	return false
}

// varyCovers reports whether a Vary value makes the answer vary on
// Accept-Encoding already ("*" varies on everything).
func varyCovers(v string) bool { return hasToken(v, "accept-encoding") || hasToken(v, "*") }

// weakETag returns the ETag of a compressed answer, made from the
// target's value as nginx does: a strong tag becomes weak (the bytes
// differ, the meaning does not, RFC 9110 8.8.3), a weak one stays, and a
// malformed one is dropped (keep false). prefix is "W/" to put before v,
// or "" to keep v as it is.
func weakETag(v string) (prefix string, keep bool) {
	switch {
	case strings.HasPrefix(v, "W/"):
		return "", true
	case strings.HasPrefix(v, `"`):
		return "W/", true
	}
	return "", false
}
