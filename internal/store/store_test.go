package store

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"

	"github.com/shoal-dev/shoal/internal/api"
)

// crashChildEnv makes the test binary act as the writer that the crash
// test kills: see TestMain and runCrashChild.
const crashChildEnv = "SHOAL_STORE_CRASH_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		runCrashChild(path)
		return
	}
	goleak.VerifyTestMain(m)
}

// runCrashChild writes releases and events in a loop, printing each
// committed version after its transaction returned, until it is killed.
// The loop is bounded so an orphan cannot run forever.
func runCrashChild(path string) {
	s, err := Open(path, Options{MaxEvents: 50})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	for i := 0; i < 100000; i++ {
		r, err := s.PutRelease(api.Release{App: "web", Digest: "sha256:" + strings.Repeat("a", 64), Command: "./web",
			Env: []api.EnvVar{{Name: "N", Value: strconv.Itoa(i)}}})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		if _, err := s.AppendEvent("web", api.Event{Type: "release_made", Release: r.Version}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		fmt.Printf("%d\n", r.Version)
	}
	os.Exit(0)
}

func open(t *testing.T, path string, opts Options) *Store {
	t.Helper()
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "shoal.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.PutRelease(api.Release{App: "web", Digest: "sha256:x", Command: "./web",
		Env: []api.EnvVar{{Name: "A", Value: "1"}, {Name: "KEY", Value: "s3cret", Secret: true}}, ConfigFingerprint: "fp", Change: api.ChangeInitial})
	if err != nil {
		t.Fatal(err)
	}
	if r.Version != 1 || r.Status != api.ReleasePending || r.CreatedAt.IsZero() {
		t.Fatalf("new release = %+v", r)
	}
	if err := s.PutGroup(api.Group{App: "web", Min: 1, Max: 4, Desired: 2}); err != nil {
		t.Fatal(err)
	}
	if err := s.Activate("web", 1, api.ReleaseSuperseded); err != nil {
		t.Fatal(err)
	}
	if err := s.SetDesired("web", 3); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendEvent("web", api.Event{Type: "scaled", Reason: "operator", From: "2"}); err != nil {
		t.Fatal(err)
	}
	key, err := s.Key("sticky", 32)
	if err != nil || len(key) != 32 {
		t.Fatalf("key %d bytes, %v", len(key), err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v, %v", fi.Mode(), err)
	}

	s = open(t, path, Options{})
	g, ok, err := s.GetGroup("web")
	if err != nil || !ok || g.Release != 1 || g.Desired != 3 || g.Min != 1 || g.Max != 4 || g.UpdatedAt.IsZero() {
		t.Fatalf("group = %+v, %v, %v", g, ok, err)
	}
	got, err := s.GetRelease("web", 1)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != api.ReleaseActive || got.Digest != "sha256:x" || len(got.Env) != 2 || got.Env[1].Value != "s3cret" || !got.Env[1].Secret ||
		got.ConfigFingerprint != "fp" || got.Change != api.ChangeInitial || !got.CreatedAt.Equal(r.CreatedAt) {
		t.Fatalf("release after reopen = %+v", got)
	}
	if red := got.Redacted(); red.Env[1].Value != "[redacted]" || red.Env[0].Value != "1" || got.Env[1].Value != "s3cret" {
		t.Fatalf("Redacted = %+v (original %+v)", red.Env, got.Env)
	}
	evs, err := s.Events("web", 0, 0)
	if err != nil || len(evs) != 1 || evs[0].Seq != 1 || evs[0].From != "2" || evs[0].Reason != "operator" {
		t.Fatalf("events = %+v, %v", evs, err)
	}
	key2, err := s.Key("sticky", 32)
	if err != nil || string(key2) != string(key) {
		t.Fatal("key changed across reopen")
	}
	if _, _, err := s.GetGroup("other"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.GetGroup("other"); ok {
		t.Fatal("unknown group found")
	}
}

func TestSchemaNewerRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shoal.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		return b.Put(keySchema, []byte("2"))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(path, Options{})
	if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), "schema 2, written by a newer Shoal") {
		t.Fatalf("Open = %v, want ErrSchema", err)
	}
}

func TestSecondOpenFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shoal.db")
	open(t, path, Options{})
	_, err := Open(path, Options{Timeout: 50 * time.Millisecond})
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("second Open = %v, want ErrInUse", err)
	}
	want := fmt.Sprintf("data dir in use by another shoal (pid %d)", os.Getpid())
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err, want)
	}
}

func TestReleaseNumberingAndPrune(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "shoal.db"), Options{})
	if n, _ := s.NextRelease("web"); n != 1 {
		t.Fatalf("NextRelease = %d", n)
	}
	for i := 1; i <= 7; i++ {
		r, err := s.PutRelease(api.Release{App: "web", Digest: fmt.Sprintf("d%d", i)})
		if err != nil || r.Version != i {
			t.Fatalf("release %d got version %d, %v", i, r.Version, err)
		}
	}
	if r, err := s.PutRelease(api.Release{App: "api"}); err != nil || r.Version != 1 {
		t.Fatalf("other app numbering: %d, %v", r.Version, err)
	}
	if n, _ := s.NextRelease("web"); n != 8 {
		t.Fatalf("NextRelease = %d", n)
	}
	// Updating keeps everything but status and note.
	if _, err := s.PutRelease(api.Release{App: "web", Version: 2, Digest: "changed", Status: api.ReleaseFailed, Note: "boot loop"}); err != nil {
		t.Fatal(err)
	}
	if r, _ := s.GetRelease("web", 2); r.Digest != "d2" || r.Status != api.ReleaseFailed || r.Note != "boot loop" {
		t.Fatalf("updated release = %+v", r)
	}
	if _, err := s.PutRelease(api.Release{App: "web", Version: 99}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update of a missing release = %v", err)
	}
	if _, err := s.PutRelease(api.Release{App: "web", Status: "weird"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad status = %v", err)
	}
	if err := s.PutGroup(api.Group{App: "web", Min: 1, Max: 3, Desired: 1, Release: 3}); err != nil {
		t.Fatal(err)
	}
	deleted, err := s.PruneReleases("web", 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	var dv []int
	for _, r := range deleted {
		dv = append(dv, r.Version)
	}
	// Kept: 1 and 3 (protected, count toward keep) and 7, the newest.
	if fmt.Sprint(dv) != "[2 4 5 6]" {
		t.Fatalf("deleted %v", dv)
	}
	rels, err := s.Releases("web")
	if err != nil {
		t.Fatal(err)
	}
	var kv []int
	for _, r := range rels {
		kv = append(kv, r.Version)
	}
	if fmt.Sprint(kv) != "[7 3 1]" {
		t.Fatalf("kept %v", kv)
	}
	if r, _ := s.PutRelease(api.Release{App: "web"}); r.Version != 8 {
		t.Fatalf("version after prune = %d, want 8 (never reused)", r.Version)
	}
	if _, err := s.GetRelease("web", 2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("pruned release: %v", err)
	}
}

func TestActivateAndGroupRules(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "shoal.db"), Options{})
	if err := s.PutGroup(api.Group{App: "web", Min: 2, Max: 1, Desired: 1}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("min > max accepted: %v", err)
	}
	if err := s.PutGroup(api.Group{App: "web", Min: 1, Max: 3, Desired: 2, Release: 5}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing release accepted: %v", err)
	}
	if err := s.SetDesired("web", 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetDesired without group: %v", err)
	}
	if err := s.PutGroup(api.Group{App: "web", Min: 1, Max: 3, Desired: 2}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetDesired("web", 4); !errors.Is(err, ErrInvalid) {
		t.Fatalf("desired above max: %v", err)
	}
	r1, _ := s.PutRelease(api.Release{App: "web"})
	r2, _ := s.PutRelease(api.Release{App: "web"})
	for _, r := range []api.Release{r1, r2} { // only a release that served is superseded or rolled back
		if err := s.MarkServed("web", r.Version, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Activate("web", r1.Version, api.ReleaseSuperseded); err != nil {
		t.Fatal(err)
	}
	if err := s.Activate("web", r2.Version, api.ReleaseSuperseded); err != nil {
		t.Fatal(err)
	}
	if err := s.Activate("web", r1.Version, api.ReleaseRolledBack); err != nil {
		t.Fatal(err)
	}
	a, _ := s.GetRelease("web", 1)
	b, _ := s.GetRelease("web", 2)
	g, _, _ := s.GetGroup("web")
	if a.Status != api.ReleaseActive || b.Status != api.ReleaseRolledBack || g.Release != 1 {
		t.Fatalf("statuses %s %s, group release %d", a.Status, b.Status, g.Release)
	}
	g, err := s.UpdateGroup("web", func(g *api.Group) error { g.AutoscalePaused = true; g.Max = 5; return nil })
	if err != nil || !g.AutoscalePaused || g.Max != 5 || g.Release != 1 {
		t.Fatalf("UpdateGroup = %+v, %v", g, err)
	}
	groups, err := s.Groups()
	if err != nil || len(groups) != 1 || groups[0].App != "web" {
		t.Fatalf("Groups = %+v, %v", groups, err)
	}
}

func TestEventsTrimAndPage(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "shoal.db"), Options{MaxEvents: 5})
	for i := 1; i <= 12; i++ {
		app := "web"
		if i%2 == 0 {
			app = "api"
		}
		e, err := s.AppendEvent(app, api.Event{Type: "k", Reason: strconv.Itoa(i)})
		if err != nil || e.Seq != uint64(i) || e.Time.IsZero() {
			t.Fatalf("append %d: %+v, %v", i, e, err)
		}
	}
	all, err := s.Events("", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, e := range all {
		seqs = append(seqs, e.Seq)
	}
	if fmt.Sprint(seqs) != "[8 9 10 11 12]" {
		t.Fatalf("kept %v", seqs)
	}
	page, _ := s.Events("", 9, 2)
	if len(page) != 2 || page[0].Seq != 10 || page[1].Seq != 11 {
		t.Fatalf("page %+v", page)
	}
	web, _ := s.Events("web", 0, 0)
	if len(web) != 2 || web[0].Seq != 9 || web[1].Seq != 11 {
		t.Fatalf("web events %+v", web)
	}
	if last, _ := s.LastEventSeq(); last != 12 {
		t.Fatalf("LastEventSeq = %d", last)
	}
	if _, err := s.AppendEvent("web", api.Event{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("event without kind: %v", err)
	}
}

// TestAppendEventsIsOneWrite: a batch is stored in order with consecutive
// numbers, trimmed to MaxEvents like single events; a batch with an
// invalid event stores none of it.
func TestAppendEventsIsOneWrite(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "shoal.db"), Options{MaxEvents: 6})
	if _, err := s.AppendEvent("web", api.Event{Type: "k", Reason: "0"}); err != nil {
		t.Fatal(err)
	}
	var batch []api.Event
	for i := 1; i <= 7; i++ {
		batch = append(batch, api.Event{Type: "k", Reason: strconv.Itoa(i)})
	}
	out, err := s.AppendEvents("api", batch)
	if err != nil || len(out) != 7 {
		t.Fatalf("AppendEvents = %d events, %v", len(out), err)
	}
	for i, e := range out {
		if e.Seq != uint64(i+2) || e.Reason != strconv.Itoa(i+1) || e.Time.IsZero() {
			t.Fatalf("stored event %d: %+v", i, e)
		}
	}
	all, err := s.Events("", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range all {
		got = append(got, fmt.Sprintf("%d:%s", e.Seq, e.Reason))
	}
	if want := "[3:2 4:3 5:4 6:5 7:6 8:7]"; fmt.Sprint(got) != want {
		t.Fatalf("kept %v, want %s", got, want)
	}
	if ofAPI, _ := s.Events("api", 0, 0); len(ofAPI) != 6 {
		t.Fatalf("%d events of api, want 6", len(ofAPI))
	}
	bad := []api.Event{{Type: "k", Reason: "kept?"}, {Reason: "no kind"}}
	if _, err := s.AppendEvents("web", bad); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "event 2 of 2") {
		t.Fatalf("a batch with an event without kind: %v", err)
	}
	if last, _ := s.LastEventSeq(); last != 8 {
		t.Fatalf("after a refused batch LastEventSeq = %d, want 8 (nothing of it stored)", last)
	}
	if out, err := s.AppendEvents("web", nil); err != nil || len(out) != 0 {
		t.Fatalf("an empty batch: %v, %v", out, err)
	}
}

func TestConcurrentAppendEvent(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "shoal.db"), Options{})
	const writers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := s.AppendEvent("web", api.Event{Type: "k", Instance: strconv.Itoa(w)}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	evs, err := s.Events("", 0, 0)
	if err != nil || len(evs) != writers*each {
		t.Fatalf("%d events, %v", len(evs), err)
	}
	for i, e := range evs {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d", i, e.Seq)
		}
	}
}

// TestCrashKeepsCommittedState kills a writing process at an arbitrary
// point and checks that every release it reported as committed is there and
// that versions have no gaps.
func TestCrashKeepsCommittedState(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	path := filepath.Join(t.TempDir(), "shoal.db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(out)
	last := 0
	for sc.Scan() {
		n, err := strconv.Atoi(sc.Text())
		if err != nil {
			t.Fatalf("child wrote %q", sc.Text())
		}
		last = n
		if n >= 40 {
			break
		}
	}
	if last < 40 {
		t.Fatalf("child stopped after %d releases: %v", last, sc.Err())
	}
	if err := cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	s := open(t, path, Options{})
	rels, err := s.Releases("web")
	if err != nil {
		t.Fatalf("releases after crash: %v", err)
	}
	if len(rels) < last {
		t.Fatalf("%d releases after crash, child had committed %d", len(rels), last)
	}
	for i, r := range rels {
		want := len(rels) - i
		if r.Version != want || r.Env[0].Value != strconv.Itoa(want-1) {
			t.Fatalf("release at %d is %d (env %v), want %d", i, r.Version, r.Env, want)
		}
	}
	if n, _ := s.NextRelease("web"); n != len(rels)+1 {
		t.Fatalf("NextRelease = %d after %d releases", n, len(rels))
	}
	evs, err := s.Events("web", 0, 0)
	if err != nil || len(evs) == 0 || len(evs) > 50 {
		t.Fatalf("%d events after crash, %v", len(evs), err)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].Seq != evs[i-1].Seq+1 {
			t.Fatalf("event gap %d -> %d", evs[i-1].Seq, evs[i].Seq)
		}
	}
	if _, err := s.PutRelease(api.Release{App: "web"}); err != nil {
		t.Fatalf("write after crash: %v", err)
	}
}

func FuzzDecodeRecords(f *testing.F) {
	f.Add([]byte(`{"app":"web","release":1,"min":1,"max":3,"desired":2,"updated_at":"2024-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"version":3,"app":"web","digest":"sha256:x","command":"./x","env":[{"name":"A","value":"hunter22","secret":true}],"status":"active","created_at":"2024-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"seq":5,"time":"2024-01-01T00:00:00Z","kind":"k","fields":{"a":"b"}}`))
	f.Add([]byte(`{"version":"hunter22"}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if g, err := decodeGroup(b); err == nil {
			if g.Min < 0 || g.Min > g.Desired || g.Desired > g.Max {
				t.Fatalf("inconsistent group accepted: %+v", g)
			}
			enc, err := encodeGroup(g)
			if err != nil {
				t.Fatal(err)
			}
			if g2, err := decodeGroup(enc); err != nil || g2.App != g.App || g2.Desired != g.Desired || !g2.UpdatedAt.Equal(g.UpdatedAt) {
				t.Fatalf("group round trip: %+v vs %+v, %v", g, g2, err)
			}
		}
		r, err := decodeRelease(b)
		if err != nil {
			// Errors must not quote stored values (they may be secrets).
			if strings.Contains(err.Error(), "hunter22") {
				t.Fatalf("error leaks a value: %v", err)
			}
		} else {
			if r.Version < 1 || !r.Status.Valid() {
				t.Fatalf("inconsistent release accepted: %+v", r)
			}
			enc, err := encodeRelease(r)
			if err != nil {
				t.Fatal(err)
			}
			if r2, err := decodeRelease(enc); err != nil || r2.Version != r.Version || len(r2.Env) != len(r.Env) {
				t.Fatalf("release round trip: %+v vs %+v, %v", r, r2, err)
			}
		}
		if app, e, err := decodeEvent(b); err == nil {
			enc, err := encodeEvent(app, e)
			if err != nil {
				t.Fatal(err)
			}
			if app2, e2, err := decodeEvent(enc); err != nil || app2 != app || e2.Seq != e.Seq || e2.Type != e.Type ||
				e2.From != e.From || e2.State != e.State || e2.Addr != e.Addr || !e2.Time.Equal(e.Time) {
				t.Fatalf("event round trip: %+v vs %+v, %v", e, e2, err)
			}
		}
	})
}
