package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// runAgents is the agents' process: it starts every host of the manifest
// at path, prints "agents ready N", then obeys its stdin line by line
// ("lose NAME": take that host off the network, answered "lost NAME";
// "count": answered "count STARTS RUNNING AGAIN", the instances its
// hosts ever started, those running now, and the starts of an id started
// before) until it ends, and closes every host.
func runAgents(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	stopProfile := startCPUProfile(m.CPUProfile)
	defer stopProfile()
	hosts, err := startHosts(context.Background(), &m, 32)
	if err != nil {
		return err
	}
	defer closeHosts(hosts)
	fmt.Printf("agents ready %d\n", len(hosts))
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "count" {
			starts, running, again := countInstances(hosts)
			fmt.Printf("count %d %d %d\n", starts, running, again)
			continue
		}
		name, ok := strings.CutPrefix(in.Text(), "lose ")
		h := hosts[name]
		if !ok || h == nil {
			return fmt.Errorf("unknown command %q", in.Text())
		}
		h.close()
		delete(hosts, name)
		fmt.Printf("lost %s\n", name)
	}
	return in.Err()
}

// countInstances sums the instances hosts ever started, those they run
// now, and the starts of an id the same host had started before.
func countInstances(hosts map[string]*simHost) (starts, running, again int64) {
	for _, h := range hosts {
		starts += h.rt.starts.Load()
		running += int64(len(h.rt.List()))
		again += h.rt.again.Load()
	}
	return starts, running, again
}
