package lb

import (
	"sort"
	"strings"
)

// route is a compiled Route bound to its pool.
type route struct {
	name   string
	prefix string
	pool   *poolEntry
	m      *routeMetrics
	// longLived and longPaths mark held-open requests (see heldOpen).
	longLived bool
	longPaths []string
	// compress is the route's compression rule (compress.go); never nil.
	compress *compressRule
	// cache is the route's asset cache (cache.go); nil when off.
	cache *assetCache
}

// hostRoutes are the routes of one host pattern, longest prefix first.
type hostRoutes []*route

func (hr hostRoutes) match(path string) *route {
	for _, r := range hr {
		if hasPathPrefix(path, r.prefix) {
			return r
		}
	}
	return nil
}

// hasPathPrefix reports whether path is under prefix. A prefix matches
// whole path segments only when it does not end in "/": "/api" matches
// "/api" and "/api/x" but not "/apix".
func hasPathPrefix(path, prefix string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	if len(path) == len(prefix) || strings.HasSuffix(prefix, "/") {
		return true
	}
	return path[len(prefix)] == '/'
}

// router matches a request's host and path to a route. It is immutable
// once built and shared by concurrent requests.
type router struct {
	exact map[string]hostRoutes
	// wild maps a suffix ("example.com" for "*.example.com") to its routes.
	wild map[string]hostRoutes
	any  hostRoutes
}

// newRouter compiles routes; pools resolves pool names (validated before).
//
// caches holds the routes' asset caches by route name, shared by the
// routers of one table (a route under two listeners has one cache); a
// route not in it gets a new one, added to it. Nil: each route its own.
func newRouter(routes []Route, pools map[string]*poolEntry, m *metrics, caches map[string]*assetCache) *router {
	rt := &router{exact: map[string]hostRoutes{}, wild: map[string]hostRoutes{}}
	rules := compressRules{}
	for _, r := range routes {
		cr := &route{name: r.Name, prefix: r.PathPrefix, pool: pools[r.Pool],
			longLived: r.LongLived, longPaths: append([]string(nil), r.LongLivedPaths...),
			compress: rules.rule(r.Compression)}
		if ac, ok := caches[r.Name]; ok {
			cr.cache = ac
		} else {
			cr.cache = newAssetCache(r.Cache)
			if caches != nil {
				caches[r.Name] = cr.cache
			}
		}
		if m != nil {
			cr.m = m.forRoute(r.Name, r.Pool)
		}
		h := strings.ToLower(r.Host)
		switch {
		case h == "":
			rt.any = append(rt.any, cr)
		case strings.HasPrefix(h, "*."):
			rt.wild[h[2:]] = append(rt.wild[h[2:]], cr)
		default:
			rt.exact[h] = append(rt.exact[h], cr)
		}
	}
	sortRoutes := func(hr hostRoutes) {
		sort.SliceStable(hr, func(i, j int) bool { return len(hr[i].prefix) > len(hr[j].prefix) })
	}
	for _, hr := range rt.exact {
		sortRoutes(hr)
	}
	for _, hr := range rt.wild {
		sortRoutes(hr)
	}
	sortRoutes(rt.any)
	return rt
}

// match returns the route for host (as sent, maybe with a port and in any
// case) and path, or nil. Exact host beats wildcard beats any host; a
// more specific host with no matching prefix falls through to the next
// kind. Among wildcards the longest suffix wins.
func (rt *router) match(host, path string) *route {
	host = normHost(host)
	if len(rt.exact) > 0 {
		if hr, ok := rt.exact[host]; ok {
			if r := hr.match(path); r != nil {
				return r
			}
		}
	}
	if len(rt.wild) > 0 {
		// "a.b.example.com" tries "b.example.com", then "example.com", ...
		for i := strings.IndexByte(host, '.'); i >= 0; {
			if hr, ok := rt.wild[host[i+1:]]; ok {
				if r := hr.match(path); r != nil {
					return r
				}
			}
			j := strings.IndexByte(host[i+1:], '.')
			if j < 0 {
				break
			}
			i += j + 1
		}
	}
	return rt.any.match(path)
}

// normHost lower-cases host and strips a port and a trailing dot. It does
// not allocate for hosts that are already lower case.
func normHost(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	host = strings.TrimSuffix(host, ".")
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	for i := 0; i < len(host); i++ {
		if c := host[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(host)
		}
	}
	return host
}
