package agent

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/release"
)

func TestFenceRecordsAndRefuses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "term")
	f, err := openFence(path)
	if err != nil || f.current() != 0 {
		t.Fatalf("first open: term %d, %v", f.current(), err)
	}
	for _, term := range []uint64{3, 3, 9} {
		if err := f.admit(term); err != nil {
			t.Fatalf("admit %d: %v", term, err)
		}
	}
	err = f.admit(8)
	var st *StaleTermError
	if !errors.As(err, &st) || st.Got != 8 || st.Current != 9 || !errors.Is(err, ErrStaleTerm) {
		t.Fatalf("admit 8 after 9: %v", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "9\n" {
		t.Errorf("term file %q, %v; want 9", b, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("term file mode %v, %v; want 0600", fi.Mode(), err)
	}
	again, err := openFence(path)
	if err != nil || again.current() != 9 {
		t.Errorf("reopen: term %d, %v; want 9", again.current(), err)
	}
}

// TestDamagedTermFileRefused: a fence that cannot be read is never reset.
func TestDamagedTermFileRefused(t *testing.T) {
	for _, content := range []string{"", "7", "seven\n", "-1\n", "7\n8\n", "99999999999999999999999\n"} {
		path := filepath.Join(t.TempDir(), "term")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := openFence(path); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "damaged") {
			t.Errorf("term file %q: %v; want an error naming the damaged file", content, err)
		}
	}
}

func TestExitRing(t *testing.T) {
	ctx := context.Background()
	r := newExitRing("e1", 3)
	page, err := r.after(ctx, "", 0, time.Millisecond)
	if err != nil || len(page.Exits) != 0 || page.Epoch != "e1" || page.Last != 0 {
		t.Fatalf("empty ring: %+v, %v", page, err)
	}
	for _, id := range []string{"a", "b", "c", "d"} {
		r.push(api.InstanceExit{ID: id})
	}
	page, err = r.after(ctx, "e1", 1, time.Millisecond)
	if err != nil || len(page.Exits) != 3 || page.Exits[0].ID != "b" || page.Exits[0].Seq != 2 || page.Last != 4 {
		t.Fatalf("after 1: %+v, %v; want b, c, d", page, err)
	}
	if _, err := r.after(ctx, "e1", 0, time.Millisecond); !errors.Is(err, ErrExitsGone) {
		t.Errorf("after 0 with exit 1 dropped: %v; want ErrExitsGone", err)
	}
	if _, err := r.after(ctx, "e0", 4, time.Millisecond); !errors.Is(err, ErrExitsGone) {
		t.Errorf("another epoch: %v; want ErrExitsGone", err)
	}
	if _, err := r.after(ctx, "e1", 5, time.Millisecond); !errors.Is(err, ErrBadRequest) {
		t.Errorf("after 5 of 4: %v; want ErrBadRequest", err)
	}
	if _, err := r.after(ctx, "", 2, time.Millisecond); !errors.Is(err, ErrBadRequest) {
		t.Errorf("a sequence number without its epoch: %v; want ErrBadRequest", err)
	}
	// A waiting reader is woken by the next push.
	got := make(chan api.ExitsPage, 1)
	go func() {
		p, _ := r.after(ctx, "e1", 4, time.Minute)
		got <- p
	}()
	r.push(api.InstanceExit{ID: "e"})
	if p := <-got; len(p.Exits) != 1 || p.Exits[0].ID != "e" || p.Exits[0].Seq != 5 {
		t.Errorf("woken with %+v; want e as 5", p)
	}
	// Pages are bounded, and so is what an exit carries.
	big := newExitRing("e2", 2*maxPage)
	for range maxPage + 10 {
		big.push(api.InstanceExit{ID: "x", LogTail: strings.Repeat("y", 2*maxLogTail)})
	}
	page, err = big.after(ctx, "e2", 0, time.Millisecond)
	if err != nil || len(page.Exits) != maxPage || len(page.Exits[0].LogTail) > maxLogTail+3 || page.Last != maxPage+10 {
		t.Errorf("a long backlog gives %d exits (last %d, tail %d bytes), %v; want %d", len(page.Exits), page.Last, len(page.Exits[0].LogTail), err, maxPage)
	}
	page, err = big.after(ctx, "e2", maxPage, time.Millisecond)
	if err != nil || len(page.Exits) != 10 || page.Exits[0].Seq != maxPage+1 {
		t.Errorf("the rest of the backlog: %d exits, %v", len(page.Exits), err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := r.after(cctx, "e1", 5, time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled wait: %v", err)
	}
}

func TestHashArtifactRefusesGarbage(t *testing.T) {
	if _, err := hashArtifact(strings.NewReader("not gzip")); err == nil {
		t.Error("hashed bytes that are not gzip")
	}
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write([]byte("tar bytes"))
	w.Close()
	d, err := hashArtifact(bytes.NewReader(append(gz.Bytes(), "trailing"...)))
	if err == nil {
		t.Errorf("hashed a gzip stream with trailing garbage as %s", d)
	}
	d, err = hashArtifact(bytes.NewReader(gz.Bytes()))
	if err != nil || !release.ValidDigest(d) {
		t.Errorf("hash = %s, %v", d, err)
	}
}

func TestCheckSpecReportsEveryProblem(t *testing.T) {
	_, err := checkSpec(api.LaunchSpec{ID: "../x", Digest: "sha256:xyz", StopSignal: "SIGNOPE", StopTimeoutMS: -1, Release: -1})
	if !errors.Is(err, ErrBadRequest) {
		t.Fatalf("err = %v; want ErrBadRequest", err)
	}
	for _, want := range []string{`id "../x"`, `digest "sha256:xyz"`, "command is empty", "release -1", "stop_timeout_ms -1", `stop_signal "SIGNOPE"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v does not report %s", err, want)
		}
	}
	d := release.DigestPrefix + strings.Repeat("a", 64)
	sig, err := checkSpec(api.LaunchSpec{ID: "web-1", Digest: d, Command: "run", StopSignal: "SIGINT"})
	if err != nil || sig.String() != "interrupt" {
		t.Errorf("valid spec: %v, %v", sig, err)
	}
}

// FuzzTermFile: whatever the term file holds, opening it does not panic, and
// a file it accepts holds exactly the term it reads.
func FuzzTermFile(f *testing.F) {
	for _, s := range []string{"0\n", "7\n", "", "7", "x\n", "18446744073709551615\n", "18446744073709551616\n", "07\n", "+7\n"} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(dir, "term")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		fe, err := openFence(path)
		if err != nil {
			return
		}
		if got := strconv.FormatUint(fe.current(), 10) + "\n"; got != string(b) && strings.TrimLeft(string(b), "0") != strings.TrimLeft(got, "0") {
			t.Errorf("accepted %q as term %d", b, fe.current())
		}
	})
}
