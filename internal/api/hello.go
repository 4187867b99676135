package api

// AgentHello is the body of POST /v1/hello on the server's fleet port: what
// an agent announces each time it starts (and again when the server asks it
// to, by answering 404 to a call it makes). The server takes the agent's
// name from its verified client certificate, never from this body, and
// records the rest in its registry of hosts. Answer: 204.
type AgentHello struct {
	// URL is the agent's API, https://advertise-ip:port, which the server
	// calls with its own certificate.
	URL string `json:"url"`
	// Zone is the host's zone label ("" for none), within its Region;
	// placement spreads a group over regions, then zones.
	Zone string `json:"zone,omitempty"`
	// Region is the host's region label ("" for none); placement spreads
	// a group over regions, then over the zones of each.
	Region string `json:"region,omitempty"`
	// CPU (cores) and MemoryBytes are what the server may place on the
	// host: agent.yaml's cpu and memory, or the machine's when unset.
	CPU         float64 `json:"cpu"`
	MemoryBytes int64   `json:"memory_bytes"`
	// Epoch names this run of the agent, as in HostInfo and its exits.
	Epoch string `json:"epoch"`
	// Version is the agent's build (buildinfo), shown by `shoal hosts`.
	Version string `json:"version,omitempty"`
}
