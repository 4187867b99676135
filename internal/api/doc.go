// Package api is Shoal's one vocabulary: the domain and wire types that the
// store, the controller, the admin API, the client and the dashboard share
// (instance state, event, release, group, instance status, the bodies of the
// admin API). A concept has one type, here; a part that needs another shape
// of it (the store's persisted records, the dashboard's display strings)
// derives that shape from this type in one function of its own.
//
// It is a leaf: it imports nothing of Shoal's, so any package may import it,
// and the client links no daemon by doing so. Its types hold data and small
// pure methods only: no I/O, no locks, no goroutines.
package api
