package daemon

import (
	"net/http"
	"slices"
	"strings"

	"github.com/shoal-dev/shoal/internal/api"
)

// advertiseServers sets api.ServersHeader on every answer of the fleet
// listener (serverlist_learn.go: the nodes learn the cluster's servers
// from it).
func (s *Server) advertiseServers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if urls := s.fleetURLs(); len(urls) > 0 {
			w.Header().Set(api.ServersHeader, strings.Join(urls, ","))
		}
		next.ServeHTTP(w, r)
	})
}

// fleetURLs are this server's fleet URL and, in a cluster, those of the
// members the replicated store recorded (a server records its own when it
// leads or joins), sorted; any that is not an https URL is left out.
func (s *Server) fleetURLs() []string {
	urls := []string{s.fleetURL}
	if s.cl != nil {
		members, err := s.st.Members()
		if err != nil {
			s.log.Debug("cluster members for the nodes", "error", err)
		}
		for _, m := range members {
			urls = append(urls, strings.TrimRight(m.FleetURL, "/"))
		}
	}
	urls = slices.DeleteFunc(urls, func(u string) bool { return checkServerURL(u) != nil })
	slices.Sort(urls)
	return slices.Compact(urls)
}
