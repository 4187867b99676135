package lb

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync/atomic"
)

// idGen makes request ids: a random per-balancer prefix and a counter,
// "3f9a1c2b7d4e8f01-1a2b". Unique per balancer process with negligible
// collision chance across processes; cheap (one allocation).
type idGen struct {
	prefix [16]byte
	n      atomic.Uint64
}

func newIDGen() *idGen {
	var raw [8]byte
	rand.Read(raw[:])
	g := &idGen{}
	hex.Encode(g.prefix[:], raw[:])
	return g
}

// idLen is the longest id next makes.
const idLen = 16 + 1 + 16

func (g *idGen) next() string {
	var buf [idLen]byte
	return string(g.appendNext(buf[:0]))
}

// appendNext appends a new id to b (at most idLen bytes).
func (g *idGen) appendNext(b []byte) []byte {
	b = append(b, g.prefix[:]...)
	b = append(b, '-')
	return strconv.AppendUint(b, g.n.Add(1), 16)
}

// validRequestID reports whether a client-sent X-Request-Id is kept: 1-128
// bytes of letters, digits and "-_.:/+=". Anything else is replaced, so
// ids are safe to log and to echo.
func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-' || c == '_' || c == '.' || c == ':' || c == '/' || c == '+' || c == '=':
		default:
			return false
		}
	}
	return true
}
