package h1

import "bytes"

// Dechunker yields the data of a chunked body (RFC 9112 7.1) from bytes
// an Inspector already accepted after StartChunked, so it checks nothing
// itself: it only finds the data between the chunk-size lines, their
// CRLFs and the trailers. Its zero value is at the start of a body. A
// Dechunker is owned by one goroutine and allocates nothing.
type Dechunker struct {
	st     uint8
	remain int64 // data bytes left in the current chunk
}

// Dechunker states.
const (
	dcSize  = iota // in a chunk-size's digits
	dcExt          // in the rest of a chunk-size line (extensions, CR), until its LF
	dcData         // in chunk data
	dcCRLF         // in the CRLF after chunk data, until its LF
	dcTrail        // after the last chunk: trailers, until the body ends
)

// Next returns the first data of the body in p and how many bytes of p it
// took (data and framing before it); call it again with p[n:] until p is
// used up. Data may be empty when p held framing only.
func (d *Dechunker) Next(p []byte) (data []byte, n int) {
	for n < len(p) {
		switch d.st {
		case dcSize:
			v, ok := hexValue(p[n])
			if !ok {
				d.st = dcExt
				continue
			}
			d.remain = d.remain<<4 | int64(v)
			n++
		case dcExt, dcCRLF:
			i := bytes.IndexByte(p[n:], '\n')
			if i < 0 {
				return nil, len(p)
			}
			n += i + 1
			switch {
			case d.st == dcCRLF:
				d.st = dcSize
			case d.remain == 0:
				d.st = dcTrail
			default:
				d.st = dcData
			}
		case dcData:
			k := int(min(int64(len(p)-n), d.remain))
			d.remain -= int64(k)
			if d.remain == 0 {
				d.st = dcCRLF
			}
			return p[n : n+k], n + k
		default: // dcTrail: the Inspector reports where the body ends
			return nil, len(p)
		}
	}
	return nil, n
}

func hexValue(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// SplitField returns the name and the value (without the whitespace
// around it) of a field line as ParseResponse keeps it in Fields:
// "Name: value\r\n".
func SplitField(line []byte) (name, value []byte) {
	c := bytes.IndexByte(line, ':')
	if c < 0 {
		return nil, nil
	}
	return line[:c], bytes.TrimSpace(line[c+1:])
}
