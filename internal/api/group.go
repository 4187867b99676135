package api

import "time"

// Group is the desired state of one app's instances, as the store keeps it.
type Group struct {
	App string
	// Release is the version of the release instances should run; 0 means
	// none yet.
	Release int
	// Min, Max and Desired bound and set the instance count:
	// 0 <= Min <= Desired <= Max.
	Min, Max, Desired int
	// AutoscalePaused stops the autoscaler from changing Desired.
	AutoscalePaused bool
	// UpdatedAt is set by the store on every write.
	UpdatedAt time.Time
}
