package lb

import (
	"io"
	"sync"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// The encoders of compression at the balancer (compress.go holds the
// rule). An encoder's state is large (tens to hundreds of KiB), so each
// kind and level has a pool: a compressed answer takes one and gives it
// back when done, and memory per answer is one encoder plus the output
// of one read of the target's body.

// encoder is what the balancer needs of a compressor: all three libraries
// provide it.
type encoder interface {
	io.WriteCloser
	// Flush writes what was compressed so far as a whole, decodable
	// piece (a sync flush), so a paused stream reaches the client.
	Flush() error
	// Reset readies the encoder for a new body written to w.
	Reset(w io.Writer)
}

// Window sizes bound each encoder's memory: 256 KiB for zstd and brotli,
// whose defaults (8 MiB, 4 MiB) would make each concurrent answer that
// large; gzip's window is 32 KiB by its format.
const (
	zstdWindow  = 256 << 10
	brotliLGWin = 18
)

// encoderPools hold idle encoders by coding and level (1-9).
var encoderPools [numEncodings][10]sync.Pool

// getEncoder returns an encoder for enc at level (1-9) writing to w.
func getEncoder(enc Encoding, level int, w io.Writer) encoder {
	if e, ok := encoderPools[enc][level].Get().(encoder); ok {
		e.Reset(w)
		return e
	}
	return newEncoder(enc, level, w)
}

// putEncoder gives e back to its pool. It must be closed or abandoned:
// the next user Resets it.
func putEncoder(enc Encoding, level int, e encoder) {
	e.Reset(nil)
	encoderPools[enc][level].Put(e)
}

// newEncoder makes an encoder for enc at level. The levels are gzip's
// (1 fastest, 9 smallest); zstd and brotli take the speed class that
// compresses about as fast (see encoderLevel).
func newEncoder(enc Encoding, level int, w io.Writer) encoder {
	switch enc {
	case EncZstd:
		z, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstdLevel(level)), zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(zstdWindow), zstd.WithLowerEncoderMem(true))
		if err != nil {
			panic("zstd encoder options: " + err.Error()) // fixed options: a programming error
		}
		return z
	case EncBrotli:
		return brotli.NewWriterOptions(w, brotli.WriterOptions{Quality: brotliQuality(level), LGWin: brotliLGWin})
	default:
		g, err := gzip.NewWriterLevel(w, level)
		if err != nil {
			panic("gzip level: " + err.Error()) // checked by checkCompression
		}
		return g
	}
}

// zstdLevel maps a gzip level to zstd's speed classes.
func zstdLevel(level int) zstd.EncoderLevel {
	switch {
	case level <= 3:
		return zstd.SpeedFastest
	case level <= 6:
		return zstd.SpeedDefault
	case level <= 8:
		return zstd.SpeedBetterCompression
	}
	return zstd.SpeedBestCompression
}

// brotliQuality maps a gzip level to brotli's quality (0-11): 2 at
// levels 1 and 2, one more every two levels (6 at level 9). Qualities 0
// and 1 are not used: on JavaScript they give larger bodies than gzip at
// level 1 (so preferring br would send more bytes), while 2 gives about
// 10% fewer bytes than gzip for about twice its CPU (docs/benchmarks.md).
func brotliQuality(level int) int { return 2 + (level-1)/2 }

// appendSink is the io.Writer an encoder writes to on the fast path: its
// output is appended to b, which the loop owns.
type appendSink struct{ b []byte }

func (s *appendSink) Write(p []byte) (int, error) {
	s.b = append(s.b, p...)
	return len(p), nil
}
