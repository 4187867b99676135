package lb

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"

	"golang.org/x/crypto/chacha20poly1305"
)

// The TLS 1.3 record layer of a connection whose handshake crypto/tls
// did (tlsrecpipe.go tells how its secrets reach us and are checked).
// It keeps, per direction, the traffic secret, the key and iv derived
// from it and the sequence number; the AEAD state built from the key is
// dropped while the connection is idle and built again on its next
// record. Every rule below names the section of RFC 8446 it follows.

// Record sizes (RFC 8446 5.1, 5.2).
const (
	recHeaderLen  = 5
	recMaxPlain   = 1 << 14     // TLSInnerPlaintext content
	recMaxCipher  = 1<<14 + 256 // TLSCiphertext.length
	recMaxRecord  = recHeaderLen + recMaxCipher
	recTypeCCS    = 20
	recTypeAlert  = 21
	recTypeHS     = 22
	recTypeData   = 23
	hsTypeKeyUpd  = 24      // KeyUpdate (4.6.3)
	recRekeyAfter = 1 << 24 // records sent under one key before we rekey (5.5: AES-GCM's 2^24.5)
)

// Alert descriptions (RFC 8446 6).
const (
	alertCloseNotify  = 0
	alertUnexpected   = 10
	alertBadRecordMAC = 20
	alertOverflow     = 22
	alertIllegalParam = 47
	alertDecodeError  = 50
	alertUserCanceled = 90
)

// recAlert is a fatal error found in the client's records: the
// connection ends with this alert (RFC 8446 6.2).
type recAlert uint8

func (a recAlert) Error() string { return fmt.Sprintf("tls: record layer: sending alert %d", uint8(a)) }

// peerAlert is a fatal alert the client sent: the connection ends with
// no alert of ours (RFC 8446 6.2).
type peerAlert uint8

func (a peerAlert) Error() string { return fmt.Sprintf("tls: client sent alert %d", uint8(a)) }

// recSuite tells whether the record layer serves a TLS 1.3 cipher suite.
func recSuite(id uint16) bool {
	switch id {
	case tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256:
		return true
	}
	return false
}

// recDir is one direction's protection state: what an idle connection
// keeps is the secret, key, iv and sequence number (about 110 bytes).
type recDir struct {
	suite  uint16
	slen   uint8
	klen   uint8
	secret [48]byte
	key    [32]byte
	iv     [12]byte
	seq    uint64
	aead   cipher.AEAD // nil while idle
	used   *bool       // set at each use of aead (tlsRec.used)
}

func (d *recDir) hash() func() hash.Hash {
	if d.suite == tls.TLS_AES_256_GCM_SHA384 {
		return sha512.New384
	}
	return sha256.New
}

// expandLabel is HKDF-Expand-Label (RFC 8446 7.1) with an empty context.
func expandLabel(h func() hash.Hash, secret []byte, label string, n int) ([]byte, error) {
	info := make([]byte, 0, 4+6+len(label))
	info = append(info, byte(n>>8), byte(n), byte(6+len(label)))
	info = append(info, "tls13 "...)
	info = append(info, label...)
	info = append(info, 0)
	return hkdf.Expand(h, secret, string(info), n)
}

// setSecret makes secret the direction's traffic secret: key and iv are
// derived from it (RFC 8446 7.3) and the sequence number starts again
// at 0 (5.3).
func (d *recDir) setSecret(suite uint16, secret []byte) error {
	if !recSuite(suite) {
		return fmt.Errorf("tls: record layer: cipher suite %#04x not served", suite)
	}
	d.suite = suite
	h := d.hash()
	if len(secret) != h().Size() {
		return fmt.Errorf("tls: record layer: traffic secret of %d bytes for suite %#04x", len(secret), suite)
	}
	klen := 16
	if suite != tls.TLS_AES_128_GCM_SHA256 {
		klen = 32
	}
	key, err := expandLabel(h, secret, "key", klen)
	if err != nil {
		return err
	}
	iv, err := expandLabel(h, secret, "iv", 12)
	if err != nil {
		return err
	}
	d.slen = uint8(copy(d.secret[:], secret))
	d.klen = uint8(copy(d.key[:], key))
	copy(d.iv[:], iv)
	d.seq = 0
	d.aead = nil
	return nil
}

// update moves to the next traffic secret (RFC 8446 7.2,
// application_traffic_secret_N+1), after a KeyUpdate (4.6.3).
func (d *recDir) update() error {
	next, err := expandLabel(d.hash(), d.secret[:d.slen], "traffic upd", int(d.slen))
	if err != nil {
		return err
	}
	return d.setSecret(d.suite, next)
}

// cipher returns the AEAD, building it after an idle spell.
func (d *recDir) cipher() (cipher.AEAD, error) {
	if d.used != nil {
		*d.used = true
	}
	if d.aead != nil {
		return d.aead, nil
	}
	var err error
	key := d.key[:d.klen]
	if d.suite == tls.TLS_CHACHA20_POLY1305_SHA256 {
		d.aead, err = chacha20poly1305.New(key)
	} else {
		var b cipher.Block
		if b, err = aes.NewCipher(key); err == nil {
			d.aead, err = cipher.NewGCM(b)
		}
	}
	return d.aead, err
}

// nonce is the per-record nonce: the sequence number, left-padded to the
// iv's length, XOR the iv (RFC 8446 5.3).
func (d *recDir) nonce() [12]byte {
	n := d.iv
	for i := range 8 {
		n[11-i] ^= byte(d.seq >> (8 * i))
	}
	return n
}

// errSeqExhausted: a sequence number would wrap; RFC 8446 5.3 wants a
// new key or the end of the connection, and the client did not rekey.
var errSeqExhausted = errors.New("tls: record layer: sequence number exhausted")

// seal appends to dst a record of type typ carrying p (at most
// recMaxPlain bytes), with no padding (RFC 8446 5.2, 5.4).
func (d *recDir) seal(dst []byte, typ byte, p []byte) ([]byte, error) {
	if d.seq == math.MaxUint64 {
		return dst, errSeqExhausted
	}
	a, err := d.cipher()
	if err != nil {
		return dst, err
	}
	n := len(p) + 1 + a.Overhead()
	start := len(dst)
	if cap(dst)-start < recHeaderLen+n {
		dst = append(make([]byte, 0, start+recHeaderLen+n+recHeaderLen), dst...)
	}
	// The outer type is always application_data and the version 0x0303
	// (5.2); the header is the additional data.
	dst = append(dst, recTypeData, 3, 3, byte(n>>8), byte(n))
	dst = append(dst, p...)
	dst = append(dst, typ)
	plain := dst[start+recHeaderLen:]
	nonce := d.nonce()
	sealed := a.Seal(plain[:0], nonce[:], plain, dst[start:start+recHeaderLen])
	d.seq++
	return dst[:start+recHeaderLen+len(sealed)], nil
}

// recordLen returns the length of the whole record that starts b, or 0
// when its header is not all there; an announced length past
// recMaxCipher is record_overflow (RFC 8446 5.2).
func recordLen(b []byte) (int, error) {
	if len(b) < recHeaderLen {
		return 0, nil
	}
	n := int(b[3])<<8 | int(b[4])
	if n > recMaxCipher {
		return 0, recAlert(alertOverflow)
	}
	return recHeaderLen + n, nil
}

// open decrypts the whole record rec in place and returns its inner
// content type and content.
func (d *recDir) open(rec []byte) (byte, []byte, error) {
	// After the handshake every record is protected, so its outer type
	// is application_data (5.2); a change_cipher_spec now is
	// unexpected_message (5).
	if rec[0] != recTypeData {
		return 0, nil, recAlert(alertUnexpected)
	}
	if d.seq == math.MaxUint64 {
		return 0, nil, errSeqExhausted
	}
	a, err := d.cipher()
	if err != nil {
		return 0, nil, err
	}
	nonce := d.nonce()
	pt, err := a.Open(rec[recHeaderLen:recHeaderLen], nonce[:], rec[recHeaderLen:], rec[:recHeaderLen])
	if err != nil {
		return 0, nil, recAlert(alertBadRecordMAC) // 5.2
	}
	d.seq++
	// Padding is zeros after the content type (5.4); all zeros is
	// unexpected_message.
	i := len(pt) - 1
	for i >= 0 && pt[i] == 0 {
		i--
	}
	if i < 0 {
		return 0, nil, recAlert(alertUnexpected)
	}
	if i > recMaxPlain {
		return 0, nil, recAlert(alertOverflow) // 5.4
	}
	return pt[i], pt[:i], nil
}

// tlsRec is a connection's record layer: in protects what the client
// sends, out what we send. Only one goroutine uses each direction at a
// time (the loop's; on the general path, recConn's locks).
type tlsRec struct {
	in, out recDir
	cs      *tls.ConnectionState // for the handler's requests
	// fromServer: in carries a server's records (we are the client of a
	// target; evtargettls.go): NewSessionTicket may come, each whole
	// message given to ticket when set (serverTickets).
	fromServer bool
	ticket     func(msg []byte)
	// answerUpdate: the client asked for a KeyUpdate of ours, due before
	// our next application data (4.6.3); the sending side's.
	answerUpdate bool
	// ended: an alert went either way or a close_notify was sent; no
	// record follows.
	ended bool
	// used: a record was opened or sealed since the loop's last sweep
	// (evTLS.sweep).
	used bool
	// useless counts the client's records in a row that brought no data.
	useless int
	// hs holds the first hsN bytes of a KeyUpdate whose rest is in the
	// client's next records (postHandshake).
	hs  [5]byte
	hsN uint8
}

// maxUselessRecords is crypto/tls's bound on records in a row that bring
// no data.
const maxUselessRecords = 16

// handle acts on a record opened in the in direction: application data
// is returned; alerts and KeyUpdate are taken care of, and answer tells
// that the client asked for our KeyUpdate, due before our next
// application data (4.6.3; the caller sets answerUpdate on the sending
// side). io.EOF is the client's close_notify (6.1); a peerAlert is
// answered with no alert (6.2).
func (r *tlsRec) handle(typ byte, data []byte) (out []byte, answer bool, err error) {
	// Records that bring no data (empty ones, KeyUpdates, user_canceled)
	// are bounded as crypto/tls bounds them: a client cannot keep a loop
	// busy with them.
	if typ == recTypeData && len(data) > 0 {
		r.useless = 0
	} else if r.useless++; r.useless > maxUselessRecords {
		return nil, false, recAlert(alertUnexpected)
	}
	// A handshake message split across records has nothing between its
	// parts (5.1).
	if r.hsN > 0 && typ != recTypeHS {
		return nil, false, recAlert(alertUnexpected)
	}
	switch typ {
	case recTypeData:
		return data, false, nil // zero-length is allowed (5.1)
	case recTypeAlert:
		if len(data) != 2 {
			return nil, false, recAlert(alertDecodeError)
		}
		switch data[1] {
		case alertCloseNotify:
			return nil, false, io.EOF
		case alertUserCanceled:
			return nil, false, nil // a close_notify should follow (6.1)
		}
		return nil, false, peerAlert(data[1])
	case recTypeHS:
		if r.fromServer {
			var err error
			if data, err = r.serverTickets(data); err != nil || len(data) == 0 {
				return nil, false, err
			}
		}
		answer, err := r.postHandshake(data)
		return nil, answer, err
	}
	return nil, false, recAlert(alertUnexpected) // 5: unknown content type
}

// postHandshake handles the handshake messages of a record after the
// handshake: only KeyUpdate may come from a client (4.6; a
// NewSessionTicket or anything else is unexpected_message). A message
// may span records (5.1): the part of a KeyUpdate that came so far waits
// in r.hs, at most 4 bytes, and is checked as each byte comes, so a
// message that cannot be a KeyUpdate is refused at its first byte that
// shows it. A KeyUpdate must end its record: messages do not span a key
// change (5.1).
func (r *tlsRec) postHandshake(data []byte) (answer bool, err error) {
	if len(data) == 0 {
		return false, recAlert(alertUnexpected) // no zero-length handshake fragments (5.1)
	}
	for len(data) > 0 {
		k := copy(r.hs[r.hsN:], data)
		r.hsN += uint8(k)
		data = data[k:]
		if r.hs[0] != hsTypeKeyUpd {
			return false, recAlert(alertUnexpected)
		}
		// The length, 1 (4.6.3), as far as it came.
		for i := 1; i < int(min(r.hsN, 4)); i++ {
			if r.hs[i] != keyUpdateHeader[i] {
				return false, recAlert(alertDecodeError)
			}
		}
		if int(r.hsN) < len(r.hs) {
			return false, nil // the rest comes in the next records
		}
		r.hsN = 0
		if len(data) != 0 {
			return false, recAlert(alertUnexpected)
		}
		switch r.hs[4] {
		case 0: // update_not_requested
		case 1: // update_requested: ours before our next data (4.6.3)
			answer = true
		default:
			return false, recAlert(alertIllegalParam) // 4.6.3
		}
		if err := r.in.update(); err != nil {
			return false, err
		}
	}
	return answer, nil
}

// keyUpdateHeader is the handshake header of a KeyUpdate: its type and
// its length, 1 (RFC 8446 4, 4.6.3).
var keyUpdateHeader = [4]byte{hsTypeKeyUpd, 0, 0, 1}

// sealData appends to dst the records carrying p, each at most
// recMaxPlain bytes (5.1), after a KeyUpdate of ours when one is due
// (the client asked, 4.6.3, or the key protected recRekeyAfter records,
// 5.5); errRecEnded after an alert or close_notify (6).
func (r *tlsRec) sealData(dst, p []byte) ([]byte, error) {
	if r.ended {
		return dst, errRecEnded // nothing follows an alert (6)
	}
	var err error
	if dst, err = r.sealUpdate(dst); err != nil {
		return dst, err
	}
	for len(p) > 0 {
		k := min(len(p), recMaxPlain)
		if dst, err = r.out.seal(dst, recTypeData, p[:k]); err != nil {
			return dst, err
		}
		p = p[k:]
	}
	return dst, nil
}

// sealUpdate appends our KeyUpdate when one is due, and moves to the next
// key (4.6.3); none after an alert (6).
func (r *tlsRec) sealUpdate(dst []byte) ([]byte, error) {
	if r.ended || !r.answerUpdate && r.out.seq < recRekeyAfter {
		return dst, nil
	}
	dst, err := r.out.seal(dst, recTypeHS, []byte{hsTypeKeyUpd, 0, 0, 1, 0})
	if err != nil {
		return dst, err
	}
	r.answerUpdate = false
	return dst, r.out.update()
}

// sealAlert appends the alert a (fatal, or close_notify) and ends the
// record layer's sending (6).
func (r *tlsRec) sealAlert(dst []byte, a uint8) []byte {
	if r.ended {
		return dst
	}
	r.ended = true
	level := byte(2) // fatal
	if a == alertCloseNotify {
		level = 1
	}
	out, err := r.out.seal(dst, recTypeAlert, []byte{level, a})
	if err != nil {
		return dst
	}
	return out
}

// idle drops the AEAD states: the keys stay, the states are built again
// on the next record.
func (r *tlsRec) idle() {
	r.in.aead, r.out.aead = nil, nil
}
