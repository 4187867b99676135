package controller

import (
	"bytes"
	"io"
	"sync"

	"github.com/shoal-dev/shoal/internal/config"
)

// launchSecretsLocked returns the secret values an instance of release v
// must keep out of its log: those of v's environment and those of c.env
// (the current release's, with the other release's merged in while a
// rollout runs), which is what every other output of the controller
// redacts. c.mu is held.
func (c *Controller) launchSecretsLocked(v int) []string {
	env := secretsOf(c.env)
	if d := c.dep.active; d != nil {
		if r, ok := d.rels[v]; ok {
			env = append(env, secretsOf(envFromStore(r.Env))...)
		}
	}
	return env.SecretValues()
}

// redactWriter passes whole lines to w with secret values of env
// replaced, so a secret an app prints never leaves Shoal. A partial last
// line is held until its newline or Flush. It is safe for concurrent use
// (a build writes stdout and stderr from two goroutines).
type redactWriter struct {
	w   io.Writer
	env config.Env

	mu  sync.Mutex
	buf []byte
}

func (r *redactWriter) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf = append(r.buf, p...)
	i := bytes.LastIndexByte(r.buf, '\n')
	if i < 0 {
		if len(r.buf) > 64<<10 { // a very long line: pass it on anyway
			return len(p), r.flushLocked()
		}
		return len(p), nil
	}
	out := r.env.Redact(string(r.buf[:i+1]))
	r.buf = append(r.buf[:0], r.buf[i+1:]...)
	if _, err := io.WriteString(r.w, out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes a held partial line.
func (r *redactWriter) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.flushLocked()
}

func (r *redactWriter) flushLocked() error {
	if len(r.buf) == 0 {
		return nil
	}
	out := r.env.Redact(string(r.buf))
	r.buf = r.buf[:0]
	_, err := io.WriteString(r.w, out)
	return err
}
