package lb

import (
	"net/netip"
	"strings"
	"testing"
)

func FuzzForwarded(f *testing.F) {
	f.Add(`for=192.0.2.43;proto=https, for="[2001:db8:cafe::17]:4711"`, "app.example.com")
	f.Add(`for=unknown;by=_hidden`, "h")
	f.Add(`for="\"quoted\\\\";host=x`, "weird \"host\"")
	f.Add(`;;,`, "")
	f.Fuzz(func(t *testing.T, header, host string) {
		if els, err := parseForwarded(header); err == nil {
			for _, el := range els {
				if len(el) == 0 {
					t.Fatalf("empty element from %q", header)
				}
			}
		}
		// What we build always parses back to what we put in.
		for _, ip := range []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")} {
			el := forwardedElement(ip, host, "https")
			got, err := parseForwarded(el)
			if err != nil || len(got) != 1 {
				t.Fatalf("built %q does not parse: %v", el, err)
			}
			pairs := map[string]string{}
			for _, p := range got[0] {
				pairs[p.Key] = p.Value
			}
			wantFor := ip.String()
			if ip.Is6() {
				wantFor = "[" + wantFor + "]"
			}
			if pairs["for"] != wantFor || pairs["proto"] != "https" {
				t.Fatalf("built %q parsed as %v", el, pairs)
			}
			if host != "" && !strings.ContainsFunc(host, func(r rune) bool { return r < 0x20 || r == 0x7f }) && pairs["host"] != host {
				t.Fatalf("host %q round-tripped as %q via %q", host, pairs["host"], el)
			}
		}
	})
}

func FuzzXFF(f *testing.F) {
	f.Add("203.0.113.7, 10.0.0.1")
	f.Add("[2001:db8::1]:443,192.0.2.1:80")
	f.Add("unknown")
	f.Fuzz(func(t *testing.T, v string) {
		addrs, err := parseXFF([]string{v})
		if err != nil {
			return
		}
		// Every accepted list re-parses to the same addresses.
		parts := make([]string, len(addrs))
		for i, a := range addrs {
			parts[i] = a.String()
		}
		again, err := parseXFF([]string{strings.Join(parts, ", ")})
		if err != nil || len(again) != len(addrs) {
			t.Fatalf("%q: re-parse %v %v", v, again, err)
		}
	})
}

// FuzzFrameTracker: frame boundaries do not depend on read splits.
func FuzzFrameTracker(f *testing.F) {
	f.Add([]byte("\x81\x05hello\x82\x7e\x00\x03abc\x88\x80\x01\x02\x03\x04"), uint8(1))
	f.Add([]byte("\x82\x7f\x00\x00\x00\x00\x00\x00\x00\x02hi"), uint8(4))
	f.Fuzz(func(t *testing.T, data []byte, split uint8) {
		// ref consumes the stream byte-wise through step alone, the
		// reference for advance's in-place header parsing.
		var a, b, ref frameTracker
		a.advance(data)
		step := int(split%8) + 1
		for off := 0; off < len(data); off += step {
			b.advance(data[off:min(off+step, len(data))])
		}
		for i := range data {
			if ref.step(data[i:i+1]) != 1 {
				t.Fatalf("step did not consume a byte")
			}
		}
		// hdr beyond hn is scratch: compare the state that matters.
		same := func(x, y *frameTracker) bool {
			return x.hn == y.hn && x.remain == y.remain && string(x.hdr[:x.hn]) == string(y.hdr[:y.hn])
		}
		if !same(&a, &b) || !same(&a, &ref) {
			t.Fatalf("tracker state differs: %+v vs %+v vs %+v", a, b, ref)
		}
		var c frameTracker
		k, ok := c.toBoundary(data)
		if k > len(data) || (ok && !c.atBoundary()) {
			t.Fatalf("toBoundary %d %v", k, ok)
		}
	})
}
