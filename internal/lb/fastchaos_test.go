package lb

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Randomized robustness tests of the fast path's event loops: raw
// targets that misbehave in every way a loop must survive, and raw
// clients that pipeline, dribble and hang up at random, all derived from
// one logged seed (SHOAL_CHAOS_SEED replays a run's request sequences;
// the interleaving of connections is up to the scheduler).

// Target behaviours, chosen per request by its "b" query parameter.
const (
	bNormal     = "normal"     // Content-Length body of n bytes
	bChunked    = "chunked"    // chunked, each chunk its own write, maybe a trailer
	bCloseAfter = "closeafter" // answer with Connection: close, then close
	bCloseDelim = "closedelim" // no Content-Length, no chunked: the body ends at close
	bSlow       = "slow"       // answer after a short hold, maybe the head first
	bDrop       = "drop"       // the first arrival of the id: close without answering
	bMalformed  = "malformed"  // an invalid response head, then close
	bInterim    = "interim"    // 103 heads before the answer (relayed to the client)
	bCut        = "cut"        // the head and part of the body, then close
	bReset      = "reset"      // answer with Connection: close, then a reset
)

var chaosBehaviours = []string{
	bNormal, bNormal, bNormal, bChunked, bChunked, bCloseAfter, bCloseDelim, bSlow, bDrop, bMalformed, bInterim, bCut, bReset,
}

// stallBehaviours answer whole and keep the connection.
var stallBehaviours = []string{bNormal, bChunked, bCloseDelim, bInterim, bSlow, bReset}

// malformedHeads are response heads the fast path must answer 502 for.
// The last has bare LF line ends: no head ever completes, only the
// target's close ends the try.
var malformedHeads = []string{
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
	"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nBad Header Line\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
	"HTTP/1.1 200 OK\r\nX-Bad: a\x00b\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n",
	"SPDY/3 200 OK\r\n\r\n",
	"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
}

// chaosSeed is SHOAL_CHAOS_SEED when set, else a fresh seed; it is logged
// so a failing run can be replayed.
func chaosSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SHOAL_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("SHOAL_CHAOS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (replay with SHOAL_CHAOS_SEED=%d)", seed, seed)
	return seed
}

// openFDs is the number of descriptors the test process holds.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count descriptors: %v", err)
	}
	return len(ents)
}

// fdList names the open descriptors, for a leak report.
func fdList() string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var out []string
	for _, e := range ents {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		out = append(out, e.Name()+"->"+l)
	}
	return strings.Join(out, " ")
}

// fdBaseline counts descriptors once Go's own poller descriptors exist
// (they are created on first network use and never closed).
func fdBaseline(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	return openFDs(t)
}

// checkFDs waits (bounded) for the descriptor count to come back to base,
// allowing slack for descriptors the runtime or test framework open.
func checkFDs(t testing.TB, base int) {
	t.Helper()
	const slack = 3
	deadline := time.Now().Add(5 * time.Second)
	n := openFDs(t)
	for n > base+slack && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		n = openFDs(t)
	}
	if n > base+slack {
		t.Errorf("%d descriptors open after the run, %d before (slack %d): %s", n, base, slack, fdList())
	} else {
		t.Logf("descriptors: %d before, %d after", base, n)
	}
}

// chaosTargets are raw HTTP/1.1 targets sharing the count of arrivals per
// request id (a retried request reaches several of them).
type chaosTargets struct {
	seed  uint64
	addrs []string
	lns   []net.Listener
	quit  chan struct{}
	wg    sync.WaitGroup

	mu    sync.Mutex
	seen  map[int]int
	conns map[net.Conn]struct{}
}

func newChaosTargets(t testing.TB, n int, seed uint64) *chaosTargets {
	t.Helper()
	ts := &chaosTargets{seed: seed, quit: make(chan struct{}), seen: map[int]int{}, conns: map[net.Conn]struct{}{}}
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			ts.close()
			t.Fatal(err)
		}
		ts.lns = append(ts.lns, l)
		ts.addrs = append(ts.addrs, l.Addr().String())
		ts.wg.Add(1)
		go ts.accept(l)
	}
	t.Cleanup(ts.close)
	return ts
}

func (ts *chaosTargets) accept(l net.Listener) {
	defer ts.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		ts.mu.Lock()
		select {
		case <-ts.quit:
			ts.mu.Unlock()
			c.Close()
			return
		default:
		}
		ts.conns[c] = struct{}{}
		ts.mu.Unlock()
		ts.wg.Add(1)
		go ts.serve(c)
	}
}

// close stops the targets and waits for their goroutines (idempotent).
func (ts *chaosTargets) close() {
	ts.mu.Lock()
	select {
	case <-ts.quit:
		ts.mu.Unlock()
		return
	default:
	}
	close(ts.quit)
	for c := range ts.conns {
		c.Close()
	}
	ts.mu.Unlock()
	for _, l := range ts.lns {
		l.Close()
	}
	ts.wg.Wait()
}

func (ts *chaosTargets) arrivals(id int) int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.seen[id]
}

func (ts *chaosTargets) serve(c net.Conn) {
	defer ts.wg.Done()
	defer func() {
		ts.mu.Lock()
		delete(ts.conns, c)
		ts.mu.Unlock()
		c.Close()
	}()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		id, _ := strconv.Atoi(req.URL.Query().Get("id"))
		ts.mu.Lock()
		ts.seen[id]++
		arrival := ts.seen[id]
		ts.mu.Unlock()
		if !ts.answer(c, req, body, id, arrival) {
			return
		}
	}
}

// answer answers req as its "b" parameter says; it reports whether the
// connection stays open.
func (ts *chaosTargets) answer(c net.Conn, req *http.Request, reqBody []byte, id, arrival int) bool {
	q := req.URL.Query()
	n, _ := strconv.Atoi(q.Get("n"))
	b := q.Get("b")
	head := req.Method == http.MethodHead
	rng := rand.New(rand.NewPCG(ts.seed, uint64(id)<<4|uint64(arrival)))
	send := func(p []byte) bool {
		// In up to three writes, so heads and bodies arrive split.
		for k := rng.IntN(3); k > 0 && len(p) > 1; k-- {
			cut := 1 + rng.IntN(len(p)-1)
			if _, err := c.Write(p[:cut]); err != nil {
				return false
			}
			p = p[cut:]
		}
		_, err := c.Write(p)
		return err == nil
	}
	if req.Method == http.MethodPost && !bytes.Equal(reqBody, chaosReqBody(id)) {
		msg := fmt.Sprintf("POST %d: body of %d bytes, want %d", id, len(reqBody), len(chaosReqBody(id)))
		return send(fmt.Appendf(nil, "HTTP/1.1 500 Bad Body\r\nContent-Length: %d\r\n\r\n%s", len(msg), msg))
	}
	fields := fmt.Sprintf("X-Echo-Id: %d\r\nX-Seen-Rid: %s\r\n", id, req.Header.Get("X-Request-Id"))
	body := idBody(id, n)
	if head {
		body = nil
	}
	switch b {
	case bDrop:
		if arrival == 1 {
			if rng.IntN(2) == 0 {
				c.(*net.TCPConn).SetLinger(0) // a reset rather than a FIN
			}
			return false
		}
	case bMalformed:
		send([]byte(malformedHeads[rng.IntN(len(malformedHeads))]))
		return false
	case bInterim:
		for k := 1 + rng.IntN(2); k > 0; k-- {
			if !send([]byte("HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n")) {
				return false
			}
		}
	case bSlow:
		hold := time.NewTimer(time.Duration(5+rng.IntN(60)) * time.Millisecond)
		defer hold.Stop()
		if rng.IntN(2) == 0 {
			if !send(fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n", n, fields)) {
				return false
			}
			select {
			case <-hold.C:
			case <-ts.quit:
				return false
			}
			return send(body)
		}
		select {
		case <-hold.C:
		case <-ts.quit:
			return false
		}
	case bChunked:
		if !send(fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n%s\r\n", fields)) {
			return false
		}
		if head {
			return true
		}
		for p, k := body, 1+rng.IntN(5); len(p) > 0; k-- {
			m := len(p)
			if k > 1 {
				m = 1 + rng.IntN(len(p))
			}
			if !send(fmt.Appendf(fmt.Appendf(nil, "%x\r\n", m), "%s\r\n", p[:m])) {
				return false
			}
			p = p[m:]
		}
		if rng.IntN(4) == 0 {
			return send([]byte("0\r\nX-Trailer: t\r\n\r\n"))
		}
		return send([]byte("0\r\n\r\n"))
	case bCloseDelim:
		if head {
			send(fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nConnection: close\r\n%s\r\n", fields))
			return false
		}
		send(append(fmt.Appendf(nil, "HTTP/1.1 200 OK\r\n%s\r\n", fields), body...))
		return false
	case bCut:
		if head {
			send(fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n%s\r\n", n, fields))
			return false
		}
		part := idBody(id, n/2+1)
		switch rng.IntN(3) {
		case 0: // short of its Content-Length
			send(append(fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n", n+10, fields), part[:n/2]...))
		case 1: // inside a chunk
			send(fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n%s\r\n%x\r\n%s", fields, n+10, part[:n/2]))
		default: // a broken chunk size, then close
			send(fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n%s\r\n%x\r\n%s\r\nzz\r\n", fields, len(part), part))
		}
		return false
	case bReset:
		ok := send(append(fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n%s\r\n", n, fields), body...))
		if ok {
			c.(*net.TCPConn).SetLinger(0)
		}
		return false
	case bCloseAfter:
		send(append(fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n%s\r\n", n, fields), body...))
		return false
	}
	return send(append(fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n", n, fields), body...))
}

// chaosReqBody is the body of POST id: 0 to 699 bytes.
func chaosReqBody(id int) []byte { return idBody(id, id*31%700) }

// chaosReq is one request a chaos client sends.
type chaosReq struct {
	id       int
	method   string
	b        string
	n        int    // answer body size
	rid      string // X-Request-Id the client sends, or ""
	closeReq bool   // Connection: close
}

func randomChaosReq(rng *rand.Rand, id int) chaosReq {
	r := chaosReq{id: id, method: http.MethodGet, b: chaosBehaviours[rng.IntN(len(chaosBehaviours))]}
	switch k := rng.IntN(10); {
	case k < 2:
		r.method = http.MethodHead
	case k < 5:
		r.method = http.MethodPost
	}
	if rng.IntN(3) == 0 {
		r.n = rng.IntN(64<<10 + 1)
	} else {
		r.n = rng.IntN(2<<10 + 1)
	}
	if rng.IntN(8) == 0 {
		r.rid = "chaos-" + strconv.Itoa(id)
	}
	return r
}

func (r chaosReq) bytes() []byte {
	p := fmt.Appendf(nil, "%s /chaos?id=%d&b=%s&n=%d HTTP/1.1\r\nHost: chaos\r\n", r.method, r.id, r.b, r.n)
	if r.rid != "" {
		p = fmt.Appendf(p, "X-Request-Id: %s\r\n", r.rid)
	}
	if r.closeReq {
		p = append(p, "Connection: close\r\n"...)
	}
	if r.method == http.MethodPost {
		body := chaosReqBody(r.id)
		return append(fmt.Appendf(p, "Content-Length: %d\r\n\r\n", len(body)), body...)
	}
	return append(p, "\r\n"...)
}

// wantStatus is the status the balancer must answer r with: 502 when no
// target answered properly and retrying is not allowed or cannot help.
func (r chaosReq) wantStatus() int {
	if r.b == bMalformed || r.b == bDrop && r.method == http.MethodPost {
		return http.StatusBadGateway
	}
	return http.StatusOK
}

// checkHead checks the head of r's answer.
func (r chaosReq) checkHead(resp *http.Response) error {
	if resp.StatusCode != r.wantStatus() {
		return fmt.Errorf("status %d, want %d", resp.StatusCode, r.wantStatus())
	}
	rid := resp.Header.Get("X-Request-Id")
	if rid == "" || r.rid != "" && rid != r.rid {
		return fmt.Errorf("X-Request-Id %q (sent %q)", rid, r.rid)
	}
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	if got := resp.Header.Get("X-Echo-Id"); got != strconv.Itoa(r.id) {
		return fmt.Errorf("answer of X-Echo-Id %q", got)
	}
	if seen := resp.Header.Get("X-Seen-Rid"); seen != rid {
		return fmt.Errorf("X-Request-Id %q but the target got %q", rid, seen)
	}
	return nil
}

// cut reports whether the target cuts r's answer mid body.
func (r chaosReq) cut() bool { return r.b == bCut && r.method != http.MethodHead }

// mayCut reports whether r's answer may be cut: a reset also discards
// what the target's kernel did not send yet.
func (r chaosReq) mayCut() bool { return r.cut() || r.b == bReset }

// connGone reports an error of reading from a connection the balancer
// closed.
func connGone(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isReset(err)
}

// readAnswer reads r's answer head from br after the 103 heads of an
// interim target (one or two), which the balancer relays as HAProxy
// does: each must carry the target's Link field.
func (r chaosReq) readAnswer(br *bufio.Reader) (*http.Response, error) {
	for k := 0; ; k++ {
		resp, err := http.ReadResponse(br, &http.Request{Method: r.method})
		if err != nil || resp.StatusCode != http.StatusEarlyHints {
			return resp, err
		}
		if r.b != bInterim || k == 2 {
			return nil, fmt.Errorf("103 number %d for a %s answer", k+1, r.b)
		}
		if l := resp.Header.Get("Link"); l != "</s.css>; rel=preload" {
			return nil, fmt.Errorf("103 relayed with Link %q", l)
		}
	}
}

// read reads r's answer from br and checks it. An answer the target cut
// (only when r.mayCut) is a 502 when nothing of it had reached the client
// yet, or ends the connection, before the answer began or after its head
// and part of its body, and nothing follows: read then reports cut.
func (r chaosReq) read(br *bufio.Reader) (rid string, cut bool, err error) {
	resp, err := r.readAnswer(br)
	if err != nil {
		if r.mayCut() && connGone(err) {
			return "", true, nil
		}
		return "", false, fmt.Errorf("read answer: %w", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if r.mayCut() && resp.StatusCode == http.StatusBadGateway && err == nil {
		// The target broke its answer before any of it reached the
		// client (the bad body came in the same read as the head): the
		// balancer can still answer 502, and the connection goes on.
		if string(body) != "Bad Gateway\n" || resp.Header.Get("X-Request-Id") == "" {
			return "", false, fmt.Errorf("502 for a cut answer: %v %q", resp.Header, body)
		}
		return resp.Header.Get("X-Request-Id"), false, nil
	}
	if herr := r.checkHead(resp); herr != nil {
		return "", false, fmt.Errorf("%w (body %.80q)", herr, body)
	}
	if err != nil {
		if !r.mayCut() || !connGone(err) {
			return "", false, fmt.Errorf("read body: %w", err)
		}
		if !bytes.Equal(body, idBody(r.id, len(body))) {
			return "", false, fmt.Errorf("cut answer's %d bytes start %.40q", len(body), body)
		}
		if b, err := br.ReadByte(); err == nil {
			return "", false, fmt.Errorf("byte %q after a cut answer", b)
		}
		return "", true, nil
	}
	if r.cut() {
		return "", false, fmt.Errorf("cut answer read whole: %d bytes", len(body))
	}
	var want []byte
	switch {
	case r.method == http.MethodHead:
	case resp.StatusCode == http.StatusOK:
		want = idBody(r.id, r.n)
	default:
		want = []byte(http.StatusText(resp.StatusCode) + "\n")
	}
	if !bytes.Equal(body, want) {
		return "", false, fmt.Errorf("body of %d bytes (want %d) starts %.40q", len(body), len(want), body)
	}
	return resp.Header.Get("X-Request-Id"), false, nil
}

func (r chaosReq) String() string { return fmt.Sprintf("%s id %d b=%s n=%d", r.method, r.id, r.b, r.n) }

// chaosCounts is what clients saw.
type chaosCounts struct {
	rids      []string // X-Request-Id of every answer
	answered  int
	posts     []int // POSTs answered whole
	allPosts  []int
	truncated []int // requests cut before their end: no target may see them
	hangups   int
	cuts      int // answers the target cut
	writeCuts int // batches whose write the balancer's close after a cut ended
	pauses    int // stalled sessions seen paused
}

func (a *chaosCounts) add(b *chaosCounts) {
	a.rids = append(a.rids, b.rids...)
	a.answered += b.answered
	a.posts = append(a.posts, b.posts...)
	a.allPosts = append(a.allPosts, b.allPosts...)
	a.truncated = append(a.truncated, b.truncated...)
	a.hangups += b.hangups
	a.cuts += b.cuts
	a.writeCuts += b.writeCuts
	a.pauses += b.pauses
}

// chaosTally merges the clients' counts.
type chaosTally struct {
	mu sync.Mutex
	chaosCounts
}

// chaosClient runs connections with random request sequences until it
// sent max requests or stop passed.
type chaosClient struct {
	t     *testing.T
	ci    int
	addr  string
	rng   *rand.Rand
	stop  time.Time
	tally *chaosTally
	lb    *running
	next  int
	chaosCounts
}

func (cc *chaosClient) newReq(big bool) chaosReq {
	cc.next++
	r := randomChaosReq(cc.rng, cc.ci*100000+cc.next)
	if big {
		r.n = 32<<10 + cc.rng.IntN(32<<10+1)
	}
	if r.method == http.MethodPost {
		cc.allPosts = append(cc.allPosts, r.id)
	}
	return r
}

// write sends p in one write or in random pieces.
func (cc *chaosClient) write(c net.Conn, p []byte) error {
	if cc.rng.IntN(2) == 0 {
		_, err := c.Write(p)
		return err
	}
	maxPiece := 1 + cc.rng.IntN(200)
	for len(p) > 0 {
		m := min(len(p), 1+cc.rng.IntN(maxPiece))
		if _, err := c.Write(p[:m]); err != nil {
			return err
		}
		p = p[m:]
	}
	return nil
}

func (cc *chaosClient) run(max int) {
	for cc.next < max && time.Now().Before(cc.stop) {
		if err := cc.session(max); err != nil {
			cc.t.Errorf("client %d: %v", cc.ci, err)
			break
		}
	}
	tl := cc.tally
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.add(&cc.chaosCounts)
}

// session runs one connection: batches of one or more pipelined requests,
// ending with a close, a Connection: close request, or a hang-up mid
// request or mid response. It returns the first broken invariant.
func (cc *chaosClient) session(max int) error {
	// A stalling session begins with big answers its client does not read
	// at first, through a tiny receive window: the balancer cannot write
	// them all and pauses the target side.
	stall := cc.rng.IntN(8) == 0
	var d net.Dialer
	if stall {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				// A small MSS keeps the balancer's send buffer, which
				// Linux sizes from it, small too.
				serr = errors.Join(syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096),
					syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, 1024))
			}); err != nil {
				return err
			}
			return serr
		}
	}
	c, err := d.Dial("tcp", cc.addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	br := bufio.NewReader(c)
	for batches := 1 + cc.rng.IntN(6); batches > 0 && cc.next < max; batches-- {
		end := cc.rng.IntN(100)
		if stall {
			end = 100
		}
		switch {
		case end < 5: // hang up mid request
			r := cc.newReq(false)
			p := r.bytes()
			cc.truncated = append(cc.truncated, r.id)
			cc.hangups++
			return cc.write(c, p[:1+cc.rng.IntN(len(p)-1)])
		case end < 12: // hang up after the request, mid response
			r := cc.newReq(false)
			if err := cc.write(c, r.bytes()); err != nil {
				return fmt.Errorf("%v: write: %w", r, err)
			}
			cc.hangups++
			if cc.rng.IntN(3) == 0 {
				return nil // before any answer
			}
			resp, err := r.readAnswer(br)
			if err != nil && r.mayCut() && connGone(err) {
				return nil // closed before the answer began
			}
			if err != nil {
				return fmt.Errorf("%v: read answer: %w", r, err)
			}
			if r.mayCut() && resp.StatusCode == http.StatusBadGateway {
				return nil // broken before any of it reached the client (see read)
			}
			if err := r.checkHead(resp); err != nil {
				return fmt.Errorf("%v: %w", r, err)
			}
			io.CopyN(io.Discard, resp.Body, int64(cc.rng.IntN(r.n+1)))
			return nil
		}
		k := 1
		if stall {
			k = 3 + cc.rng.IntN(3)
		} else if cc.rng.IntN(3) == 0 {
			k = 2 + cc.rng.IntN(4)
		}
		var reqs []chaosReq
		var p []byte
		for range k {
			r := cc.newReq(stall)
			if stall {
				// Big answers that keep the connection (or are cut by a
				// reset): more than the client's window and the
				// balancer's send buffer hold.
				r.method, r.b = http.MethodGet, stallBehaviours[cc.rng.IntN(len(stallBehaviours))]
			}
			reqs = append(reqs, r)
		}
		last := batches == 1 && cc.rng.IntN(4) == 0
		reqs[k-1].closeReq = last
		for _, r := range reqs {
			p = append(p, r.bytes()...)
		}
		// A target that cuts an answer ends the client connection with it
		// (see read), and with it the rest of the batch: when an earlier
		// request of the batch may be cut, the balancer may close while
		// the later ones are still being written (dribbled, or on a
		// loaded machine). That write error is then no fault, if the
		// answers read below end in such a cut.
		writeErr := cc.write(c, p)
		if writeErr != nil && !slices.ContainsFunc(reqs[:k-1], chaosReq.mayCut) {
			return fmt.Errorf("write %d requests (%v): %w", k, reqs, writeErr)
		}
		if stall {
			// Wait (bounded) for the balancer to pause the target side of
			// this connection, then open the window and read.
			for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
				if upstreamPaused(cc.lb, c.LocalAddr().String()) {
					cc.pauses++
					break
				}
			}
			stall = false
			if err := c.(*net.TCPConn).SetReadBuffer(1 << 20); err != nil {
				return err
			}
		}
		for _, r := range reqs {
			rid, cut, err := r.read(br)
			if err != nil {
				return fmt.Errorf("%v: %w", r, err)
			}
			if cut {
				cc.cuts++
				if writeErr != nil {
					cc.writeCuts++
				}
				return nil // the rest of the batch died with the connection
			}
			cc.rids = append(cc.rids, rid)
			cc.answered++
			if r.method == http.MethodPost {
				cc.posts = append(cc.posts, r.id)
			}
		}
		if writeErr != nil {
			return fmt.Errorf("write %d requests (%v): %w, and no answer was cut", k, reqs, writeErr)
		}
		if last {
			if err := connClosed(c, 5*time.Second); err != nil {
				return fmt.Errorf("after Connection: close: %w", err)
			}
			return nil
		}
	}
	return nil
}

// upstreamPaused reports whether the loops hold the request of the
// client connection from address client with its target side paused (the
// client does not take the answer as fast as it comes).
func upstreamPaused(lb *running, client string) bool {
	fs := lb.listeners["web"].fast
	fs.mu.Lock()
	loops := fs.loops
	fs.mu.Unlock()
	found := make(chan bool, len(loops))
	for _, l := range loops {
		if !l.post(func() {
			for u := range l.ups {
				if u.paused && u.c != nil && u.c.remote == client {
					found <- true
					return
				}
			}
			found <- false
		}) {
			found <- false
		}
	}
	paused := false
	for range loops {
		paused = <-found || paused
	}
	return paused
}

// chaosConfig routes everything to the targets, retrying as often as a
// request allows (the retry budget is not what is under test).
func chaosConfig(addrs []string) Config {
	cfg := baseConfig(addrs...)
	cfg.RetryBudget = 1
	cfg.MinRetries = 1 << 20
	return cfg
}

// TestFastChaos: 40 clients on raw connections send random sequences of
// GET, HEAD and POST requests (pipelined or not, in one write or dribbled,
// sometimes hanging up mid request or mid response) through the fast
// path to three raw targets that answer normally, chunked, close
// delimited, slowly, after 1xx heads, or not at all, or with a malformed
// head. Every answer is its own request's, in order, with the right
// status and body; a POST reaches the targets at most once, a cut request
// never; the fast path served every answered request; and once everything
// is stopped the process holds no more descriptors than before.
func TestFastChaos(t *testing.T) {
	seed := chaosSeed(t)
	began := time.Now()
	base := fdBaseline(t)
	ts := newChaosTargets(t, 3, seed)
	lb := start(t, chaosConfig(ts.addrs))

	const clients, maxReqs = 40, 60
	tally := &chaosTally{}
	stop := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	for ci := range clients {
		cc := &chaosClient{t: t, ci: ci + 1, addr: lb.addr, rng: rand.New(rand.NewPCG(seed, uint64(ci))), stop: stop, tally: tally, lb: lb}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cc.run(maxReqs)
		}()
	}
	wg.Wait()
	fast := fastCount(lb)
	lb.stop(t)
	ts.close()

	rids := map[string]bool{}
	for _, rid := range tally.rids {
		if rids[rid] {
			t.Errorf("X-Request-Id %q on several answers", rid)
		}
		rids[rid] = true
	}
	for _, id := range tally.posts {
		if n := ts.arrivals(id); n != 1 {
			t.Errorf("answered POST id %d reached the targets %d times", id, n)
		}
	}
	for _, id := range tally.allPosts {
		if n := ts.arrivals(id); n > 1 {
			t.Errorf("POST id %d reached the targets %d times", id, n)
		}
	}
	for _, id := range tally.truncated {
		if n := ts.arrivals(id); n != 0 {
			t.Errorf("request id %d, cut before its end, reached the targets %d times", id, n)
		}
	}
	if fast < int64(tally.answered) {
		t.Errorf("fast path served %d requests, fewer than the %d answered", fast, tally.answered)
	}
	if tally.answered < clients {
		t.Errorf("only %d requests answered", tally.answered)
	}
	checkFDs(t, base)
	t.Logf("%d answered, %d hang-ups, %d cut requests, %d cut answers (%d ending a batch's write), %d POSTs, %d stalled sessions seen paused; fast path %d; %v",
		tally.answered, tally.hangups, len(tally.truncated), tally.cuts, tally.writeCuts, len(tally.allPosts), tally.pauses, fast, time.Since(began).Round(time.Millisecond))
}

// TestFastChaosChurn: 200 connections, 8 at a time, each connect, send
// one request (or part of one, or nothing) and close, mostly after the
// answer, sometimes before it. The loops end up holding no client
// connection, and once everything is stopped the process holds no more
// descriptors than before.
func TestFastChaosChurn(t *testing.T) {
	seed := chaosSeed(t)
	base := fdBaseline(t)
	ts := newChaosTargets(t, 3, seed)
	lb := start(t, chaosConfig(ts.addrs))
	const conns, workers = 200, 8
	var (
		next     atomic.Int64
		answered atomic.Int64
		wg       sync.WaitGroup
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1))
				if i > conns {
					return
				}
				rng := rand.New(rand.NewPCG(seed, uint64(w)<<32|uint64(i)))
				r := randomChaosReq(rng, 900000+i)
				if r.b == bSlow && rng.IntN(2) == 0 {
					r.b = bNormal
				}
				if err := churnOne(lb.addr, rng, r, &answered); err != nil {
					t.Errorf("conn %d: %v: %v", i, r, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	waitFor(t, 5*time.Second, "the loops to let go of every client connection", func() bool {
		return lb.listeners["web"].fast.conns.Load() == 0
	})
	fast := fastCount(lb)
	lb.stop(t)
	ts.close()
	if fast < answered.Load() {
		t.Errorf("fast path served %d requests, fewer than the %d answered", fast, answered.Load())
	}
	checkFDs(t, base)
	t.Logf("%d of %d connections answered; fast path %d", answered.Load(), conns, fast)
}

// churnOne runs one short connection.
func churnOne(addr string, rng *rand.Rand, r chaosReq, answered *atomic.Int64) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	p := r.bytes()
	switch k := rng.IntN(20); {
	case k == 0:
		return nil // nothing sent
	case k == 1:
		_, err := c.Write(p[:1+rng.IntN(len(p)-1)])
		return err
	case k < 5:
		_, err := c.Write(p) // gone before the answer
		return err
	}
	if _, err := c.Write(p); err != nil {
		return err
	}
	if _, cut, err := r.read(bufio.NewReader(c)); err != nil || cut {
		return err
	}
	answered.Add(1)
	return nil
}
