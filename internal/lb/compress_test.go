package lb

import (
	"bytes"
	"testing"
)

// TestAcceptEncoding: the negotiation of compressFor's coding from
// Accept-Encoding values (RFC 9110 12.5.3): q-values, "*", identity,
// x-gzip, bad elements skipped, the balancer's order on ties.
func TestAcceptEncoding(t *testing.T) {
	for _, tc := range []struct {
		values []string // nil: no field
		want   Encoding
	}{
		{nil, EncIdentity},
		{[]string{""}, EncIdentity},
		{[]string{"gzip"}, EncGzip},
		{[]string{"GZIP"}, EncGzip},
		{[]string{"x-gzip"}, EncGzip},
		{[]string{"gzip, deflate, br"}, EncBrotli},
		{[]string{"gzip, deflate, br, zstd"}, EncBrotli},
		{[]string{"zstd, gzip"}, EncZstd},
		{[]string{"deflate"}, EncIdentity},
		{[]string{"identity"}, EncIdentity},
		{[]string{"*"}, EncBrotli},
		{[]string{"*;q=0"}, EncIdentity},
		{[]string{"*;q=0, gzip"}, EncGzip},
		{[]string{"gzip;q=0, *"}, EncBrotli},
		{[]string{"br;q=0, zstd;q=0, *;q=0.1"}, EncGzip},
		{[]string{"br;q=0.5, gzip;q=0.8"}, EncGzip},
		{[]string{"br;q=0.8, gzip;q=0.8"}, EncBrotli},
		{[]string{"br;q=1.0, gzip;q=1"}, EncBrotli},
		{[]string{"br;q=0.001, gzip;q=0"}, EncBrotli},
		{[]string{"br ; q=0.5 , gzip ; Q=0.4"}, EncBrotli},
		{[]string{"br;q=1.5, gzip"}, EncGzip},    // q above 1: skipped
		{[]string{"br;q=0.1234, gzip"}, EncGzip}, // four decimals: skipped
		{[]string{"br;q=.5, gzip"}, EncGzip},
		{[]string{"br;q=, gzip"}, EncGzip},
		{[]string{"br;level=3, gzip;q=0.5"}, EncBrotli},
		{[]string{",, gzip ,"}, EncGzip},
		{[]string{"gzip;q=0.5", "br;q=0.9"}, EncBrotli}, // two fields
		{[]string{"gzip;q=0", "gzip;q=0.3"}, EncGzip},   // the highest of a coding named twice
	} {
		var a acceptEncoding
		for _, v := range tc.values {
			a.add(v)
		}
		if got := a.choose(); got != tc.want {
			t.Errorf("%q: %v, want %v", tc.values, got, tc.want)
		}
	}
}

// TestCompressFor: the rule's table, case by case: what is compressed,
// and where Vary is added.
func TestCompressFor(t *testing.T) {
	on := newCompressRule(Compression{})
	base := answerFacts{status: 200, contentType: "text/html; charset=utf-8", length: 5000}
	for _, tc := range []struct {
		name     string
		rule     *compressRule
		accept   Encoding
		edit     func(*answerFacts)
		want     Encoding
		wantVary bool
	}{
		{"compressed", on, EncGzip, nil, EncGzip, true},
		{"unknown length", on, EncZstd, func(f *answerFacts) { f.length = -1 }, EncZstd, true},
		{"client accepts none", on, EncIdentity, nil, EncIdentity, true},
		{"off", newCompressRule(Compression{Off: true}), EncGzip, nil, EncIdentity, false},
		{"not a compressible type", on, EncGzip, func(f *answerFacts) { f.contentType = "image/png" }, EncIdentity, false},
		{"no type", on, EncGzip, func(f *answerFacts) { f.contentType = "" }, EncIdentity, false},
		{"type/*", on, EncGzip, func(f *answerFacts) { f.contentType = "Text/CSS" }, EncGzip, true},
		{"bare type/ is not type/*", on, EncGzip, func(f *answerFacts) { f.contentType = "text/" }, EncIdentity, false},
		{"svg", on, EncBrotli, func(f *answerFacts) { f.contentType = "image/svg+xml" }, EncBrotli, true},
		{"HEAD", on, EncGzip, func(f *answerFacts) { f.head = true }, EncIdentity, true},
		{"upgrade", on, EncGzip, func(f *answerFacts) { f.upgrade = true }, EncIdentity, false},
		{"101", on, EncGzip, func(f *answerFacts) { f.status = 101 }, EncIdentity, false},
		{"204", on, EncGzip, func(f *answerFacts) { f.status = 204 }, EncIdentity, true},
		{"206", on, EncGzip, func(f *answerFacts) { f.status = 206 }, EncIdentity, true},
		{"Content-Range", on, EncGzip, func(f *answerFacts) { f.ranged = true }, EncIdentity, true},
		{"304", on, EncGzip, func(f *answerFacts) { f.status = 304 }, EncIdentity, true},
		{"500 page", on, EncGzip, func(f *answerFacts) { f.status = 500 }, EncGzip, true},
		{"encoded", on, EncGzip, func(f *answerFacts) { f.encoded = true }, EncIdentity, true},
		{"no-transform", on, EncGzip, func(f *answerFacts) { f.noTransform = true }, EncIdentity, true},
		{"trailers", on, EncGzip, func(f *answerFacts) { f.trailers = true }, EncIdentity, true},
		{"Vary covered", on, EncGzip, func(f *answerFacts) { f.varies = true }, EncGzip, false},
		{"under the minimum", on, EncGzip, func(f *answerFacts) { f.length = DefaultCompressMinSize - 1 }, EncIdentity, true},
		{"at the minimum", on, EncGzip, func(f *answerFacts) { f.length = DefaultCompressMinSize }, EncGzip, true},
		{"empty", on, EncGzip, func(f *answerFacts) { f.length = 0 }, EncIdentity, true},
		{"own minimum", newCompressRule(Compression{MinSize: 10}), EncGzip, func(f *answerFacts) { f.length = 10 }, EncGzip, true},
		{"own types", newCompressRule(Compression{Types: []string{"application/json"}}), EncGzip, nil, EncIdentity, false},
	} {
		f := base
		if tc.edit != nil {
			tc.edit(&f)
		}
		enc, vary := tc.rule.compressFor(tc.accept, &f)
		if enc != tc.want || vary != tc.wantVary {
			t.Errorf("%s: %v, vary %v; want %v, vary %v", tc.name, enc, vary, tc.want, tc.wantVary)
		}
	}
}

func TestHeaderTokens(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want bool
	}{
		{"no-transform", true},
		{"public, No-Transform", true},
		{"max-age=60,no-transform", true},
		{"no-transformx", false},
		{"private", false},
		{"", false},
	} {
		if got := hasToken(tc.v, "no-transform"); got != tc.want {
			t.Errorf("hasToken(%q) = %v", tc.v, got)
		}
	}
	for v, want := range map[string]bool{"Accept-Encoding": true, "origin, accept-encoding": true, "*": true, "Origin": false, "": false} {
		if got := varyCovers(v); got != want {
			t.Errorf("varyCovers(%q) = %v", v, got)
		}
	}
	for v, want := range map[string]string{`"x"`: `W/"x"`, `W/"x"`: `W/"x"`, `x`: ``, ``: ``} {
		got := ""
		if prefix, keep := weakETag(v); keep {
			got = prefix + v
		}
		if got != want {
			t.Errorf("weakETag(%q) = %q, want %q", v, got, want)
		}
	}
}

// TestEncodersRoundTrip: every coding at every level, from a pooled
// encoder that served another body before, flushes decodable pieces and
// ends with a body that decodes back.
func TestEncodersRoundTrip(t *testing.T) {
	body := textBody(100<<10, 3)
	for enc := EncGzip; enc < numEncodings; enc++ {
		for level := 1; level <= 9; level++ {
			for round := range 2 {
				var out bytes.Buffer
				e := getEncoder(enc, level, &out)
				e.Write(body[:1000])
				if err := e.Flush(); err != nil {
					t.Fatal(err)
				}
				if out.Len() == 0 {
					t.Errorf("%v/%d: nothing written by a flush", enc, level)
				}
				e.Write(body[1000:])
				if err := e.Close(); err != nil {
					t.Fatal(err)
				}
				putEncoder(enc, level, e)
				if got := decode(t, enc.String(), out.Bytes()); !bytes.Equal(got, body) {
					t.Errorf("%v/%d round %d: decoded %d bytes, want %d", enc, level, round, len(got), len(body))
				}
				if out.Len() > len(body)/3 {
					t.Errorf("%v/%d: %d bytes from %d", enc, level, out.Len(), len(body))
				}
			}
		}
	}
}
