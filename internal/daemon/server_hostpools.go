package daemon

import (
	"fmt"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/fleet"
	"github.com/shoal-dev/shoal/internal/hostpool"
)

// openHostPools builds the elastic hosts of server.yaml's host_pools
// (issue 17): each pool's provider with its token (a file of mode 0600, or
// the environment), its machines joining fleet.url with one-time tokens,
// its decisions and failures as fleet events. Run runs them.
func (s *Server) openHostPools() error {
	for i, pc := range s.cfg.HostPools {
		tok, err := hostpool.LoadToken(pc.TokenFile, hostpool.TokenEnv)
		if err != nil {
			return &ConfigError{Err: fmt.Errorf("host_pools[%d] (%s): %w", i, pc.Name, err)}
		}
		prov, err := hostpool.NewDigitalOcean(hostpool.DigitalOceanOptions{Token: tok, BaseURL: pc.APIURL})
		if err != nil {
			return &ConfigError{Err: fmt.Errorf("host_pools[%d] (%s): %w", i, pc.Name, err)}
		}
		p, err := hostpool.New(hostpool.Options{
			Name: pc.Name, Provider: prov, Size: pc.Size, Image: pc.Image, ServerURL: s.fleetURL,
			Limits: hostpool.Limits{Min: pc.MinHosts, Max: pc.MaxHosts, EmptyAfter: pc.EmptyAfter.D(),
				JoinDeadline: pc.JoinDeadline.D(), Regions: pc.Regions},
			Fleet: poolFleet{s},
			NewToken: func(ttl time.Duration) (string, error) {
				tok, rec, err := s.pki.NewToken(api.RoleAgent, ttl)
				if err == nil {
					s.log.Info("join token made", "token_id", rec.ID, "role", string(rec.Role), "expires", rec.Expires, "pool", pc.Name)
				}
				return tok, err
			},
			TakenNames: s.nodes.names,
			OnEvent:    s.fleetEvent,
			Logger:     s.log.With("part", "hostpool"),
			Every:      pc.CheckEvery.D(),
		})
		if err != nil {
			return &ConfigError{Err: err}
		}
		s.pools = append(s.pools, p)
	}
	return nil
}

// poolFleet is the fleet as a pool sees it: removing a host also refuses
// its certificate from then on (pki.NodeRemoved), so the destroyed
// machine's identity opens nothing.
type poolFleet struct{ s *Server }

func (f poolFleet) Status() []api.HostStatus { return f.s.hostStatus() }

func (f poolFleet) Unplaced() []fleet.Unplaced { return f.s.fleet().Unplaced() }

func (f poolFleet) Drain(name string) error { return f.s.fleet().Drain(name) }

func (f poolFleet) Remove(name string) error {
	err := f.s.fleet().Remove(name)
	f.s.nodes.mem.Remove(name)
	return err
}
