// Package hostpool grows and shrinks the fleet's hosts through a cloud
// provider's API (issue 17): elastic hosts, as an EC2 Auto Scaling group
// launches servers from an AMI. A Pool (pool.go) watches the fleet's
// instances that no host can take (fleet.Unplaced) and its empty hosts,
// asks the pure Decide (decide.go) what to do, and acts through a Provider
// (DigitalOcean first: digitalocean.go): it creates machines from an image
// with user-data that starts `shoal agent` joined with a one-time token
// (userdata.go), drains and destroys the hosts left empty, and destroys a
// machine whose agent never joined.
//
// Idempotence. Every machine of a pool carries the pool's tag (Tag) and a
// name made of the pool's name and a sequence number (MachineName), which
// is the fleet host's name too. A pass lists the tagged machines before it
// decides, so a restarted server finds the machines it made, and a create
// whose answer was lost is not repeated: the name it asked for is listed.
//
// Nothing here logs, stores or sends the provider's credential except in
// the Authorization header of the provider's API (Token, digitalocean.go).
package hostpool

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Machine is one machine of a pool, as the provider lists it.
type Machine struct {
	// ID is the provider's id of the machine (a droplet id).
	ID string
	// Name is the machine's name and its fleet host's name.
	Name   string
	Region string
	// Created is when the provider made it.
	Created time.Time
	// Status is the provider's word for it ("new", "active", ...).
	Status string
	// IP is its private address, else its public one; "" while unknown.
	IP string
}

// CreateSpec is a machine to create.
type CreateSpec struct {
	Name   string
	Region string
	Size   string
	// Image is the image (snapshot) slug or numeric id.
	Image string
	// UserData is the script the machine runs at its first boot
	// (cloud-init). It holds a join token: never log it.
	UserData string
	// Tags are the provider's tags of the machine; the pool's tag first.
	Tags []string
}

// Provider creates, lists and destroys machines through a cloud API.
// Implementations are safe for concurrent use, and every error of an API
// call that the caller may retry is an *APIError.
type Provider interface {
	// Name is the provider's name ("digitalocean"), for messages.
	Name() string
	// List returns every machine that carries tag, sorted by name.
	List(ctx context.Context, tag string) ([]Machine, error)
	// Create makes a machine and returns it as the provider first
	// describes it (its address may not be known yet).
	Create(ctx context.Context, spec CreateSpec) (Machine, error)
	// Destroy deletes the machine id; one already gone is no error.
	Destroy(ctx context.Context, id string) error
	// AssignReservedIP points the provider's reserved (floating) address
	// ip at machine id: the cloud's way of moving a balancer's address,
	// instead of keepalived.
	AssignReservedIP(ctx context.Context, ip, id string) error
}

// APIError is a failed call of a provider's API: the operation, the HTTP
// status (0 when no answer came) and the provider's message.
type APIError struct {
	Op     string
	Status int
	// RetryAfter is when the provider asks to be called again (a 429's
	// rate-limit reset); zero when it did not say.
	RetryAfter time.Duration
	Err        error
}

func (e *APIError) Error() string {
	switch {
	case e.Status == http.StatusTooManyRequests:
		return fmt.Sprintf("%s: rate limited (429): %v", e.Op, e.Err)
	case e.Status != 0:
		return fmt.Sprintf("%s: %d %s: %v", e.Op, e.Status, http.StatusText(e.Status), e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Op, e.Err)
}

func (e *APIError) Unwrap() error { return e.Err }

// RateLimited reports whether err is a provider's 429.
func RateLimited(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusTooManyRequests
}
