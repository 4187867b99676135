package daemon

// ConfigError marks an error as one of the configuration given to the
// daemon (a balancer that lb.New rejects, for example), as opposed to a
// failure while running; the CLI exits with its usage status for it.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }
