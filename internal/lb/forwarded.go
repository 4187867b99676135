package lb

import (
	"errors"
	"net/http"
	"net/netip"
	"strings"

	"github.com/shoal-dev/shoal/internal/h1"
)

// removeHopHeaders deletes hop-by-hop headers and those listed in
// Connection from h, in place.
func removeHopHeaders(h http.Header) {
	for _, v := range h["Connection"] {
		for len(v) > 0 {
			var f string
			f, v, _ = strings.Cut(v, ",")
			if f = strings.TrimSpace(f); f != "" {
				delete(h, http.CanonicalHeaderKey(f))
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

// setForwarded rewrites the client headers of an outgoing request. client
// is the direct peer, trusted reports that it is a trusted proxy (its
// headers are kept and extended), host is the request's Host and proto
// "http" or "https".
func setForwarded(h http.Header, client netip.Addr, trusted bool, host, proto string) {
	ip := client.String()
	if !trusted {
		for _, k := range clientHeaders {
			delete(h, k)
		}
		// One backing array for the five values; each slice is capped so
		// an append elsewhere copies instead of overwriting a neighbour.
		v := untrustedForwarded(ip, proto, host, forwardedElement(client, host, proto))
		vals := v[:]
		for i, k := range clientHeaders {
			h[k] = vals[i : i+1 : i+1]
		}
		return
	}
	// A trusted proxy's chain is extended. Values that do not parse are
	// replaced rather than passed on, so a target never sees garbage that
	// looks like it came from us.
	xff := h["X-Forwarded-For"]
	if prior, err := parseXFF(xff); err == nil && len(prior) > 0 {
		h["X-Forwarded-For"] = []string{strings.Join(xff, ", ") + ", " + ip}
	} else {
		h["X-Forwarded-For"] = []string{ip}
	}
	if len(h["X-Forwarded-Proto"]) != 1 || !validProto(h["X-Forwarded-Proto"][0]) {
		h["X-Forwarded-Proto"] = []string{proto}
	}
	if len(h["X-Forwarded-Host"]) != 1 || h["X-Forwarded-Host"][0] == "" {
		h["X-Forwarded-Host"] = []string{host}
	}
	if len(h["X-Real-Ip"]) != 1 {
		h["X-Real-Ip"] = []string{ip}
	} else if _, err := netip.ParseAddr(h["X-Real-Ip"][0]); err != nil {
		h["X-Real-Ip"] = []string{ip}
	}
	el := forwardedElement(client, host, proto)
	if fw := h["Forwarded"]; len(fw) > 0 {
		if _, err := parseForwarded(strings.Join(fw, ", ")); err == nil {
			h["Forwarded"] = []string{strings.Join(fw, ", ") + ", " + el}
			return
		}
	}
	h["Forwarded"] = []string{el}
}

func validProto(p string) bool { return p == "http" || p == "https" }

// forwardedElement builds one RFC 7239 element: for=...;host=...;proto=...
func forwardedElement(client netip.Addr, host, proto string) string {
	var b strings.Builder
	b.Grow(32 + len(host))
	b.WriteString("for=")
	if client.Is6() && !client.Is4In6() {
		b.WriteString(`"[`)
		b.WriteString(client.String())
		b.WriteString(`]"`)
	} else {
		b.WriteString(client.Unmap().String())
	}
	if host != "" {
		b.WriteString(";host=")
		writeForwardedValue(&b, host)
	}
	b.WriteString(";proto=")
	b.WriteString(proto)
	return b.String()
}

// writeForwardedValue writes v as a token, or as a quoted-string when it
// holds characters a token cannot.
func writeForwardedValue(b *strings.Builder, v string) {
	tok := v != ""
	for i := 0; i < len(v); i++ {
		if !h1.IsTokenByte(v[i]) {
			tok = false
			break
		}
	}
	if tok {
		b.WriteString(v)
		return
	}
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		if c < 0x20 && c != '\t' || c == 0x7f {
			c = '?' // never emit control bytes; Host was validated anyway
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
}

// forwardedPair is one parameter of a Forwarded element.
type forwardedPair struct{ Key, Value string }

var errForwarded = errors.New("malformed Forwarded header")

// parseForwarded parses a Forwarded header value (RFC 7239 section 4):
// comma-separated elements of semicolon-separated token=value pairs, the
// value a token or a quoted-string. Keys are lower-cased; quoted values
// are unescaped.
func parseForwarded(v string) ([][]forwardedPair, error) {
	var out [][]forwardedPair
	var el []forwardedPair
	i := 0
	skipOWS := func() {
		for i < len(v) && (v[i] == ' ' || v[i] == '\t') {
			i++
		}
	}
	for {
		skipOWS()
		start := i
		for i < len(v) && h1.IsTokenByte(v[i]) {
			i++
		}
		if i == start || i >= len(v) || v[i] != '=' {
			return nil, errForwarded
		}
		key := strings.ToLower(v[start:i])
		i++ // '='
		var val string
		if i < len(v) && v[i] == '"' {
			i++
			var b strings.Builder
			closed := false
			for i < len(v) {
				c := v[i]
				i++
				if c == '"' {
					closed = true
					break
				}
				if c == '\\' {
					if i >= len(v) {
						return nil, errForwarded
					}
					c = v[i]
					i++
				}
				if c < 0x20 && c != '\t' || c == 0x7f {
					return nil, errForwarded
				}
				b.WriteByte(c)
			}
			if !closed {
				return nil, errForwarded
			}
			val = b.String()
		} else {
			start = i
			for i < len(v) && h1.IsTokenByte(v[i]) {
				i++
			}
			if i == start {
				return nil, errForwarded
			}
			val = v[start:i]
		}
		el = append(el, forwardedPair{key, val})
		skipOWS()
		if i == len(v) {
			return append(out, el), nil
		}
		switch v[i] {
		case ';':
			i++
		case ',':
			i++
			out = append(out, el)
			el = nil
		default:
			return nil, errForwarded
		}
	}
}

var errXFF = errors.New("malformed X-Forwarded-For header")

// parseXFF parses X-Forwarded-For lines into addresses. Every entry must
// be an IP address (an optional port or brackets are accepted).
func parseXFF(lines []string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, line := range lines {
		for _, f := range strings.Split(line, ",") {
			f = strings.TrimSpace(f)
			a, err := parseNodeAddr(f)
			if err != nil {
				return nil, errXFF
			}
			out = append(out, a)
		}
	}
	return out, nil
}

func parseNodeAddr(s string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a, nil
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr(), nil
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		return netip.ParseAddr(s[1 : len(s)-1])
	}
	return netip.Addr{}, errXFF
}
