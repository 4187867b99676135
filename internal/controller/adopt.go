package controller

import (
	"context"
	"fmt"

	"github.com/shoal-dev/shoal/internal/api"
)

// Adopter is implemented by a Host whose instances outlive the process
// that started them (a fleet: the agents keep running them while the
// server restarts). A controller whose Host is an Adopter calls Adopt once
// at the start of Run, after the active release is chosen and before the
// first launch, and takes the instances returned over instead of starting
// new ones.
type Adopter interface {
	// Adopt returns the instances of app that run now, each once, sorted
	// by id. From then on the host delivers their exits and takes Stop,
	// Logs and Stats calls for them as for instances it started. A partial
	// failure (a host that could not be listed) returns the instances
	// found together with an error naming what was left out. Adopt blocks
	// at most until ctx ends.
	Adopt(ctx context.Context, app string) ([]Adopted, error)
}

// Adopted is one running instance an Adopter hands to the controller.
type Adopted struct {
	ID string
	// Host names the machine that runs it, for events and logs.
	Host    string
	Release int
	// Digest is the artifact it runs from.
	Digest  string
	Running Running
	// CPU (cores) and Memory (bytes) are what it declared at its start.
	CPU    float64
	Memory int64
}

// leaveRunning ends Run's hold on the instances left after the loop and
// its workers have ended, without stopping them (Options.LeaveRunning).
func (c *Controller) leaveRunning() {
	c.mu.Lock()
	n := 0
	for _, in := range c.instances {
		in.cancel()
		n++
	}
	if n > 0 {
		c.events.add(api.Event{Type: "shoal", Release: c.current.Version,
			Reason: fmt.Sprintf("stopped; %d instances left running for the next start to adopt", n)})
	}
	c.mu.Unlock()
	c.log.Info("stopped, instances left running", "instances", n)
}
