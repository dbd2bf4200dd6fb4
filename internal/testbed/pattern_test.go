package testbed

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// The stream does not depend on how it is cut into reads.
func TestPatternIndependentOfChunks(t *testing.T) {
	whole := make([]byte, 10_000)
	_, _ = NewPattern(7).Read(whole)
	p := NewPattern(7)
	var pieces []byte
	for i, n := 0, 1; len(pieces) < len(whole); i, n = i+1, n*3%97+1 {
		b := make([]byte, min(n, len(whole)-len(pieces)))
		_, _ = p.Read(b)
		pieces = append(pieces, b...)
	}
	if !bytes.Equal(whole, pieces) {
		t.Fatal("the stream read in pieces differs from the stream read whole")
	}
	other := make([]byte, len(whole))
	_, _ = NewPattern(8).Read(other)
	if bytes.Equal(whole, other) {
		t.Fatal("seeds 7 and 8 give the same stream")
	}
}

// The verifier accepts the stream however it arrives, and stops at the
// first corrupt, lost or foreign byte.
func TestVerifierCatchesCorruption(t *testing.T) {
	const n = 100_000
	stream := func(seed uint64) []byte {
		b := make([]byte, n)
		_, _ = NewPattern(seed).Read(b)
		return b
	}
	for _, tc := range []struct {
		name    string
		edit    func([]byte) []byte
		badAt   int64 // -1: intact
		receive int   // read size
	}{
		{"intact", func(b []byte) []byte { return b }, -1, 1460},
		{"intact, odd reads", func(b []byte) []byte { return b }, -1, 7},
		{"one bit flipped", func(b []byte) []byte { b[54321] ^= 0x10; return b }, 54321, 1460},
		{"first byte", func(b []byte) []byte { b[0]++; return b }, 0, 1460},
		{"last byte", func(b []byte) []byte { b[n-1]++; return b }, n - 1, 4096},
		{"a segment lost", func(b []byte) []byte { return append(b[:3000:3000], b[4460:]...) }, 3000, 1460},
		{"a segment twice", func(b []byte) []byte { return append(b[:4460:4460], b[3000:]...) }, 4460, 1460},
		{"another stream", func([]byte) []byte { return stream(2) }, 0, 1460},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.edit(stream(1))
			v := NewVerifier(1)
			var err error
			for r := bytes.NewReader(got); err == nil; {
				buf := make([]byte, tc.receive)
				k, rerr := r.Read(buf)
				if rerr == io.EOF {
					break
				}
				_, err = v.Write(buf[:k])
			}
			switch {
			case tc.badAt < 0 && (err != nil || v.Verified() != int64(len(got))):
				t.Errorf("intact stream: verified %d of %d, error %v", v.Verified(), len(got), err)
			case tc.badAt >= 0 && !errors.Is(err, ErrCorrupt):
				t.Errorf("error %v, want ErrCorrupt", err)
			case tc.badAt >= 0 && v.Verified() != tc.badAt:
				t.Errorf("verified %d bytes, want %d (the first bad one)", v.Verified(), tc.badAt)
			}
			if tc.badAt >= 0 {
				// Nothing after the corruption counts.
				if _, err := v.Write(got[:1]); !errors.Is(err, ErrCorrupt) || v.Verified() != tc.badAt {
					t.Errorf("after corruption: Write = %v, verified %d; want ErrCorrupt, %d", err, v.Verified(), tc.badAt)
				}
			}
		})
	}
}
