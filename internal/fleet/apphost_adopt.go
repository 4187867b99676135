package fleet

import (
	"context"
	"fmt"

	"github.com/shoal-dev/shoal/internal/controller"
)

// Adopt implements controller.Adopter for the app's controller at its
// start: it waits until no host is joining (Settle, bounded by ctx), then
// takes over the app's running instances (Fleet.Adopt). app must be the
// app the Host was made for.
func (a *appHost) Adopt(ctx context.Context, app string) ([]controller.Adopted, error) {
	if app != a.v.app {
		return nil, fmt.Errorf("adopt %s: this host serves app %s", app, a.v.app)
	}
	if err := a.f.Settle(ctx); err != nil {
		return nil, fmt.Errorf("adopt %s: %w", app, err)
	}
	found, err := a.f.Adopt(ctx, app)
	out := make([]controller.Adopted, 0, len(found))
	for _, in := range found {
		out = append(out, in.controllerView())
	}
	return out, err
}

// controllerView is the instance as the controller takes it over.
func (in AdoptedInstance) controllerView() controller.Adopted {
	return controller.Adopted{ID: in.ID, Release: in.Release, Digest: in.Digest,
		Running: controller.Running{Addr: in.Addr, PID: in.PID, Started: in.Started, Host: in.Host, Zone: in.Zone},
		CPU:     in.CPU, Memory: in.Memory}
}

var _ controller.Adopter = (*appHost)(nil)
