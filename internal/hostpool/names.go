package hostpool

import (
	"strconv"
	"strings"
)

// TagPrefix begins the tag of every machine of a pool.
const TagPrefix = "shoal-pool:"

// Tag is the provider tag of pool's machines: "shoal-pool:web". A
// DigitalOcean tag holds letters, digits, ':', '-' and '_'; pool names are
// lowercase letters, digits and '-' (config checks them).
func Tag(pool string) string { return TagPrefix + pool }

// MachineName is the name of pool's machine number seq (from 1): "web-3".
// It is also the name of its fleet host, so it must be a valid node name;
// the pool's name is short enough for that (config checks it).
func MachineName(pool string, seq int) string { return pool + "-" + strconv.Itoa(seq) }

// SeqOf returns the sequence number of name if it is a machine name of
// pool (MachineName), and false otherwise.
func SeqOf(pool, name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, pool+"-")
	if !ok || rest == "" || rest[0] == '0' {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n <= 0 || strconv.Itoa(n) != rest {
		return 0, false
	}
	return n, true
}
