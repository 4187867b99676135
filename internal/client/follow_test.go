package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// A followed event stream that a follower ends when the leader moves
// (broken mid-stream, or ended cleanly) is opened again after the last
// event received: every event comes once, in order, and the follow goes
// on until its context ends.
func TestFollowEventsReattaches(t *testing.T) {
	var mu sync.Mutex
	var asked []string // the after of each call
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.URL.Query().Get("after"))
		n := len(asked)
		mu.Unlock()
		send := func(seqs ...uint64) {
			for _, s := range seqs {
				json.NewEncoder(w).Encode(Event{Seq: s, Reason: fmt.Sprint("event ", s)})
			}
			w.(http.Flusher).Flush()
		}
		switch n {
		case 1:
			send(1, 2)
			panic(http.ErrAbortHandler) // the leader's answer broke
		case 2:
			send(3) // ended cleanly: the forward's watch saw a new leader
		default:
			send(4)
			<-r.Context().Done()
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(testenv.Context(t, time.Minute))
	defer cancel()
	var got []uint64
	err := New(srv.URL, "tok").FollowEvents(ctx, 0, func(e Event) error {
		got = append(got, e.Seq)
		if e.Seq == 4 {
			cancel()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("follow: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(got) != "[1 2 3 4]" || fmt.Sprint(asked) != "[0 2 3]" {
		t.Fatalf("events %v from calls after %v, want [1 2 3 4] from calls after [0 2 3]", got, asked)
	}
}

// A followed stream whose server stopped (it ended the stream cleanly,
// and nothing answers now) ends the follow without an error; one that
// broke and cannot be opened again is an error saying both.
func TestFollowEventsServerGone(t *testing.T) {
	for _, broken := range []bool{false, true} {
		srv := httptest.NewServer(nil)
		srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			json.NewEncoder(w).Encode(Event{Seq: 1})
			w.(http.Flusher).Flush()
			go srv.Listener.Close() // nothing answers the next call
			if broken {
				panic(http.ErrAbortHandler)
			}
		})
		c := New(srv.URL, "tok")
		err := c.FollowEvents(testenv.Context(t, time.Minute), 0, func(Event) error { return nil })
		srv.Close()
		if !broken && err != nil {
			t.Errorf("stream ended by a server that stopped: %v, want nil", err)
		}
		if broken && (err == nil || !strings.Contains(err.Error(), "cannot be opened again") || !strings.Contains(err.Error(), "nothing answers")) {
			t.Errorf("broken stream of a server that stopped: %v, want an error saying it ended and nothing answers", err)
		}
	}
}

// A followed log stream that ends is opened again for the lines from
// then on (tail 0), so no line is copied twice.
func TestLogsFollowReattaches(t *testing.T) {
	var mu sync.Mutex
	var tails []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		tails = append(tails, r.URL.Query().Get("tail"))
		n := len(tails)
		mu.Unlock()
		if n == 1 {
			io.WriteString(w, "a\nb\n")
			return // the leader moved
		}
		io.WriteString(w, "c\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(testenv.Context(t, time.Minute))
	defer cancel()
	out := &cancelOn{want: "c\n", cancel: cancel}
	if err := New(srv.URL, "tok").Logs(ctx, "i-1", 5, true, out); err != nil {
		t.Fatalf("logs: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if out.b.String() != "a\nb\nc\n" || fmt.Sprint(tails) != "[5 0]" {
		t.Fatalf("copied %q from calls with tail %v, want %q from [5 0]", out.b.String(), tails, "a\nb\nc\n")
	}
}

// cancelOn is a writer that calls cancel once what it got ends with want.
type cancelOn struct {
	b      strings.Builder
	want   string
	cancel func()
}

func (c *cancelOn) Write(p []byte) (int, error) {
	c.b.Write(p)
	if strings.HasSuffix(c.b.String(), c.want) {
		c.cancel()
	}
	return len(p), nil
}
