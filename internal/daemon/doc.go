// Package daemon composes Shoal's long-running processes, `shoal up`
// (Up: store, runtime, artifacts, controller, balancer, admin API and
// dashboard) and `shoal lb` (LB: balancer and admin API from lb.yaml). It
// owns their listeners, the parts it builds and the order in which they
// stop; the parts themselves live in their own packages.
//
// Each process is opened, then run: OpenUp and OpenLB bind every listener
// and return a bind or configuration error at once, with nothing left
// open; Run serves until its context ends and returns only after every
// goroutine it started has ended and every part is released. Close
// releases an opened process that is not run. The CLI parses flags, loads
// the configuration, builds the logger (NewLogger), calls these and prints.
package daemon
