package agent

import "sync"

// maxStopped bounds how many stopped instance ids an agent remembers.
const maxStopped = 4096

// stoppedIDs are the ids of the instances this agent was asked to stop,
// the newest maxStopped of them (the agent's run only). A start of one is
// refused: the leader gave it up already. A start whose answer was lost
// (a loaded host) is stopped by the fleet at once, and that stop may
// reach the agent before the start itself, still on its way: answered
// "nothing runs", it let the late start run an instance no server knew
// of (TestSmallFleet under load: "agents run 507 instances, want 500").
// Instance ids are never started twice (controller: a new id per
// launch), so refusing one costs nothing.
type stoppedIDs struct {
	mu    sync.Mutex
	ids   map[string]struct{}
	order []string // oldest first
}

// add remembers id.
func (s *stoppedIDs) add(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.ids[id]; ok {
		return
	}
	if s.ids == nil {
		s.ids = map[string]struct{}{}
	}
	if len(s.order) == maxStopped {
		delete(s.ids, s.order[0])
		s.order = s.order[1:]
	}
	s.ids[id] = struct{}{}
	s.order = append(s.order, id)
}

// has reports whether id was stopped.
func (s *stoppedIDs) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.ids[id]
	return ok
}
