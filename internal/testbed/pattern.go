package testbed

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
)

// ErrCorrupt is returned by a Verifier at the first byte that differs
// from the pattern.
var ErrCorrupt = errors.New("received bytes differ from what was sent")

// Pattern is the byte stream a flow sends: pseudo-random bytes from a
// seed, the same however it is read in pieces, so that the receiver can
// regenerate and compare every byte instead of trusting a final sum.
type Pattern struct{ gen *rand.ChaCha8 }

// NewPattern starts the stream of seed.
func NewPattern(seed uint64) *Pattern {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return &Pattern{gen: rand.NewChaCha8(s)}
}

// Read fills p with the next bytes of the stream; it never fails.
func (p *Pattern) Read(b []byte) (int, error) { return p.gen.Read(b) }

// Verifier checks a received stream against the pattern of its seed.
type Verifier struct {
	want     *Pattern
	buf      []byte
	verified int64
	err      error
}

// NewVerifier checks the stream of seed from its first byte.
func NewVerifier(seed uint64) *Verifier { return &Verifier{want: NewPattern(seed)} }

// Write compares p with the next bytes of the pattern. From the first
// difference on it returns an error wrapping ErrCorrupt with its offset,
// and counts nothing more as verified.
func (v *Verifier) Write(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if cap(v.buf) < len(p) {
		v.buf = make([]byte, len(p))
	}
	want := v.buf[:len(p)]
	_, _ = v.want.Read(want)
	if i := mismatch(p, want); i >= 0 {
		v.verified += int64(i)
		v.err = fmt.Errorf("at byte %d: %w", v.verified, ErrCorrupt)
		return i, v.err
	}
	v.verified += int64(len(p))
	return len(p), nil
}

// Verified is how many bytes from the start matched the pattern.
func (v *Verifier) Verified() int64 { return v.verified }

// Err is the corruption found, if any.
func (v *Verifier) Err() error { return v.err }

// mismatch is the index of the first byte where a and b differ, or -1.
func mismatch(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}
