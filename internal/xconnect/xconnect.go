// Package xconnect turns on extended CONNECT (RFC 8441, WebSockets over
// HTTP/2) in golang.org/x/net/http2's server, and in nothing else.
//
// x/net/http2 reads the switch once, from GODEBUG=http2xconnect=1 in the
// environment, when it initializes (Go issue 71128 keeps it off by
// default). Go initializes packages in the order of their import paths
// among those whose imports are done (the Go spec's package
// initialization, Go 1.21 on): this package imports net/http, so it runs
// after net/http (whose bundled HTTP/2 server keeps extended CONNECT off),
// and its path sorts before golang.org/x/net/http2, which imports nothing
// this package does not, so it runs before it. Its init adds the setting;
// Restore, called from the init of a package that imports x/net/http2
// (lb), gives the environment back as it was, so that processes shoal
// starts (instances) do not inherit it.
package xconnect

import (
	_ "net/http" // initialized first: its own HTTP/2 server keeps the default
	"os"
)

const setting = "http2xconnect=1"

var (
	saved  string
	hadVar bool
)

func init() {
	saved, hadVar = os.LookupEnv("GODEBUG")
	v := setting
	if saved != "" {
		v = saved + "," + setting
	}
	os.Setenv("GODEBUG", v)
}

// Restore puts GODEBUG back as it was before this package's init. Call it
// from an init that runs after golang.org/x/net/http2's.
func Restore() {
	if hadVar {
		os.Setenv("GODEBUG", saved)
	} else {
		os.Unsetenv("GODEBUG")
	}
}
