package lb

import (
	"bytes"
	"crypto/tls"
	"testing"
)

// TestTLSRecordsAppSeq checks how the server's handshake records give the
// first sequence number under the application key: the records under it
// are counted only when each opens in turn from 0, the handshake key's
// are opened when no ticket was sent, and anything out of order, damaged
// or not a handshake message refuses the connection.
func TestTLSRecordsAppSeq(t *testing.T) {
	const suite = tls.TLS_AES_128_GCM_SHA256
	hs, app := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	clear := []byte{recTypeHS, 3, 3, 0, 4, 2, 0, 0, 0} // a ServerHello's place
	ccs := []byte{recTypeCCS, 3, 3, 0, 1, 1}
	ticket := []byte{4, 0, 0, 1, 0} // a NewSessionTicket's header and a byte
	// flight returns what a server wrote: the clear records, nHS records
	// under hs, then records under app at the sequence numbers appSeqs,
	// each of inner type typ.
	flight := func(nHS int, appSeqs []uint64, typ byte) []byte {
		var h, a recDir
		if h.setSecret(suite, hs) != nil || a.setSecret(suite, app) != nil {
			t.Fatal("setSecret")
		}
		b := append(append([]byte(nil), clear...), ccs...)
		var err error
		for range nHS {
			if b, err = h.seal(b, recTypeHS, bytes.Repeat([]byte{8}, 900)); err != nil {
				t.Fatal(err)
			}
		}
		for _, n := range appSeqs {
			a.seq = n
			if b, err = a.seal(b, typ, ticket); err != nil {
				t.Fatal(err)
			}
		}
		return b
	}
	seq := func(written []byte) (uint64, bool) {
		var out recDir
		if err := out.setSecret(suite, app); err != nil {
			t.Fatal(err)
		}
		out.seq = 99
		keep := append([]byte(nil), written...)
		n, ok := appSeq(written, &out, hs)
		if !bytes.Equal(keep, written) {
			t.Fatal("appSeq changed the records")
		}
		if ok && out.seq != n {
			t.Fatalf("out.seq %d, returned %d", out.seq, n)
		}
		return n, ok
	}
	for _, tc := range []struct {
		name      string
		written   []byte
		want      uint64
		wantValid bool
	}{
		{"one ticket", flight(4, []uint64{0}, recTypeHS), 1, true},
		{"two tickets", flight(4, []uint64{0, 1}, recTypeHS), 2, true},
		{"three tickets", flight(4, []uint64{0, 1, 2}, recTypeHS), 3, true},
		{"no ticket", flight(4, nil, recTypeHS), 0, true},
		{"a ticket's number skipped", flight(4, []uint64{0, 2, 3}, recTypeHS), 0, false},
		{"a ticket twice", flight(4, []uint64{0, 0}, recTypeHS), 0, false},
		{"first ticket at 1", flight(4, []uint64{1, 2}, recTypeHS), 0, false},
		{"application data under app", flight(4, []uint64{0}, recTypeData), 0, false},
		{"nothing protected", flight(0, nil, recTypeHS), 0, false},
		{"clear after protected", append(flight(4, []uint64{0}, recTypeHS), ccs...), 0, false},
		{"cut record", flight(4, []uint64{0}, recTypeHS)[:100], 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, ok := seq(tc.written)
			if ok != tc.wantValid || ok && n != tc.want {
				t.Fatalf("appSeq = %d, %v; want %d, %v", n, ok, tc.want, tc.wantValid)
			}
		})
	}
	// A damaged byte in a record that is opened refuses the records: a
	// ticket, or with no ticket a record under hs. (With a ticket the
	// records under hs are not opened: crypto/tls wrote them, and the
	// ticket alone shows the application secret is this connection's.)
	one, none := flight(4, []uint64{0}, recTypeHS), flight(4, nil, recTypeHS)
	for _, d := range []struct {
		w  []byte
		at int
	}{{one, len(one) - 3}, {none, len(clear) + len(ccs) + 10}, {none, len(none) - 3}} {
		w := append([]byte(nil), d.w...)
		w[d.at] ^= 1
		if _, ok := seq(w); ok {
			t.Errorf("damaged byte at %d of %d accepted", d.at, len(w))
		}
	}
}
