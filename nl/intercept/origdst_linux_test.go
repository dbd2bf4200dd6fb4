package intercept

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// family16 is an address family as struct sockaddr stores it: host order.
func family16(f uint16) []byte { return binary.NativeEndian.AppendUint16(nil, f) }

func TestParseSockaddr(t *testing.T) {
	in4 := append(family16(unix.AF_INET), 0x00, 0x50, 203, 0, 113, 5, 0, 0, 0, 0, 0, 0, 0, 0)
	in6 := append(family16(unix.AF_INET6), 0x01, 0xbb, 0, 0, 0, 0,
		0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5,
		2, 0, 0, 0) // scope id, dropped
	for _, tt := range []struct {
		name    string
		in      []byte
		want    string
		wantErr string
	}{
		{"sockaddr_in", in4, "203.0.113.5:80", ""},
		// The kernel leaves the rest of a sockaddr_in6-sized buffer as is.
		{"sockaddr_in in a larger buffer", append(bytes.Clone(in4), make([]byte, 12)...), "203.0.113.5:80", ""},
		{"sockaddr_in6", in6, "[2001:db8::5]:443", ""},
		{"short sockaddr_in", in4[:7], "", "7 bytes, too short for sockaddr_in"},
		{"short sockaddr_in6", in6[:23], "", "23 bytes, too short for sockaddr_in6"},
		{"no family", []byte{2}, "", "1 bytes, too short for a sockaddr"},
		{"other family", append(family16(unix.AF_UNIX), make([]byte, 26)...), "", "address family 1, want AF_INET or AF_INET6"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSockaddr(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("parseSockaddr = %v, %v; want error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != netip.MustParseAddrPort(tt.want) {
				t.Fatalf("parseSockaddr = %v, %v; want %s", got, err, tt.want)
			}
		})
	}
}

// FuzzParseSockaddr checks that whatever parses is what the bytes say.
func FuzzParseSockaddr(f *testing.F) {
	f.Add(append(family16(unix.AF_INET), 0x00, 0x50, 203, 0, 113, 5, 0, 0, 0, 0, 0, 0, 0, 0))
	f.Add(append(family16(unix.AF_INET6), make([]byte, 26)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		ap, err := parseSockaddr(b)
		if err != nil {
			return
		}
		addr := ap.Addr().AsSlice()
		at := 4 // sockaddr_in: family, port, address
		if ap.Addr().Is6() {
			at = 8 // sockaddr_in6: family, port, flow info, address
		}
		if binary.BigEndian.Uint16(b[2:]) != ap.Port() || !bytes.Equal(b[at:at+len(addr)], addr) {
			t.Fatalf("parseSockaddr(%x) = %s", b, ap)
		}
	})
}
