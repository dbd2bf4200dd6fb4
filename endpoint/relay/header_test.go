package relay

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"
)

var (
	testKey  = Key{1, 2, 3}
	otherKey = Key{9}
	t0       = time.UnixMilli(1_790_000_000_123)
)

func dest(s string) Destination {
	a := netip.MustParseAddrPort(s)
	return Destination{Addr: a, Port: a.Port()}
}

func TestHeaderRoundTrip(t *testing.T) {
	for _, d := range []Destination{
		dest("203.0.113.5:443"),
		dest("[2001:db8::5]:80"),
		{Host: "example.com", Port: 8080},
		{Host: strings.Repeat("a", 255), Port: 1},
	} {
		h := NewHeader(d, t0)
		b, err := AppendHeader([]byte("before"), h, &testKey)
		if err != nil {
			t.Fatalf("%v: %v", d, err)
		}
		if !bytes.HasPrefix(b, []byte("before")) {
			t.Fatal("AppendHeader lost what was in b")
		}
		r := bytes.NewReader(append(b[len("before"):], "GET /"...))
		got, err := ReadHeader(r, []Key{otherKey, testKey})
		if err != nil {
			t.Fatalf("%v: %v", d, err)
		}
		if got != h {
			t.Errorf("read %+v, want %+v", got, h)
		}
		// Nothing past the header is consumed: it is the client's.
		if rest, _ := io.ReadAll(r); string(rest) != "GET /" {
			t.Errorf("%v: left %q, want the client's bytes", d, rest)
		}
	}
}

// TestHeaderWire pins the layout documented in header.go.
func TestHeaderWire(t *testing.T) {
	h := Header{Time: t0, Nonce: [16]byte{0xaa, 15: 0xbb}, Dest: dest("203.0.113.5:443")}
	b, err := AppendHeader(nil, h, &testKey)
	if err != nil {
		t.Fatal(err)
	}
	want := "01" + "01" + "0032" + // version, IPv4, 50 bytes
		"000001a0c4506c7b" + // Unix ms
		"aa0000000000000000000000000000bb" +
		"01bb" + "cb007105" // 443, 203.0.113.5
	if got := hex.EncodeToString(b[:len(b)-macLen]); got != want {
		t.Errorf("header\n got %s\nwant %s", got, want)
	}
	if len(b) != minHeader {
		t.Errorf("length %d, want %d", len(b), minHeader)
	}
}

func TestHeaderRefused(t *testing.T) {
	good, _ := AppendHeader(nil, NewHeader(dest("203.0.113.5:443"), t0), &testKey)
	host, _ := AppendHeader(nil, NewHeader(Destination{Host: "example.com", Port: 80}, t0), &testKey)
	flip := func(b []byte, i int) []byte {
		c := bytes.Clone(b)
		c[i] ^= 1
		return c
	}
	for _, tc := range []struct {
		name  string
		in    []byte
		keys  []Key
		field string
	}{
		{"short", good[:20], []Key{testKey}, "read"},
		{"wrong key", good, []Key{otherKey}, "mac"},
		{"no keys", good, nil, "mac"},
		{"version", flip(good, 0), []Key{testKey}, "version"},
		{"address type", append([]byte{1, 9}, good[2:]...), []Key{testKey}, "address"},
		{"length", flip(good, 3), []Key{testKey}, "length"},
		{"host length too long", append([]byte{1, 3, 0xff, 0xff}, good[4:]...), []Key{testKey}, "length"},
		{"time changed", flip(good, 11), []Key{testKey}, "mac"},
		{"nonce changed", flip(good, 20), []Key{testKey}, "mac"},
		{"port changed", flip(good, 29), []Key{testKey}, "mac"},
		{"address changed", flip(good, 33), []Key{testKey}, "mac"},
		{"mac changed", flip(good, len(good)-1), []Key{testKey}, "mac"},
		{"name changed", flip(host, 35), []Key{testKey}, "mac"},
		{"plain HTTP", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), []Key{testKey}, "version"},
		{"TLS", []byte{0x16, 0x03, 0x01, 0x02, 0x00}, []Key{testKey}, "version"},
	} {
		_, err := ReadHeader(bytes.NewReader(tc.in), tc.keys)
		var he *HeaderError
		if !errors.As(err, &he) || he.Field != tc.field {
			t.Errorf("%s: %v, want a %q error", tc.name, err, tc.field)
		}
	}
	// Nothing at all is not a bad header but an unused connection.
	if _, err := ReadHeader(bytes.NewReader(nil), []Key{testKey}); err != io.EOF {
		t.Errorf("empty: %v, want io.EOF", err)
	}
}

// TestHeaderMACCoversName: a header with a valid MAC but a name a
// resolver should never see is refused anyway (only a key holder can make
// one, but the relay trusts no input).
func TestHeaderHostChecked(t *testing.T) {
	for _, name := range []string{"", "a b", "evil\x00.com", "x\n", strings.Repeat("a", 256)} {
		if _, err := AppendHeader(nil, NewHeader(Destination{Host: name, Port: 1}, t0), &testKey); err == nil {
			t.Errorf("host %q: AppendHeader accepted it", name)
		}
	}
	// Build the bad one by hand, with a valid MAC.
	body := []byte{1, 3, 0, 0}
	body = append(body, make([]byte, 8+16)...)
	body = append(body, 0, 80, 3, 'a', ' ', 'b')
	body[3] = byte(len(body) + macLen)
	b := append(body, mac(&testKey, body)...)
	if _, err := ReadHeader(bytes.NewReader(b), []Key{testKey}); err == nil || !strings.Contains(err.Error(), "not a letter") {
		t.Errorf("name %q: %v", "a b", err)
	}
}

func TestHeaderPortZero(t *testing.T) {
	b, _ := AppendHeader(nil, NewHeader(Destination{Addr: netip.MustParseAddrPort("203.0.113.5:0")}, t0), &testKey)
	if _, err := ReadHeader(bytes.NewReader(b), []Key{testKey}); err == nil {
		t.Error("port 0 accepted")
	}
}

// FuzzReadHeader: arbitrary bytes never panic, never read past the
// header, and a header that passes has a valid destination. The seeds
// include valid headers under the fuzz key, so mutations explore past
// the MAC check's prefix too.
func FuzzReadHeader(f *testing.F) {
	for _, d := range []Destination{dest("203.0.113.5:443"), dest("[2001:db8::5]:80"), {Host: "example.com", Port: 8080}} {
		b, _ := AppendHeader(nil, NewHeader(d, t0), &testKey)
		f.Add(append(b, "GET /"...))
	}
	f.Add([]byte{1, 3, 0, 47})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		h, err := ReadHeader(r, []Key{testKey})
		read := len(in) - r.Len()
		if read > MaxHeaderLen {
			t.Fatalf("read %d bytes, more than a header", read)
		}
		if err != nil {
			return
		}
		if h.Dest.Port == 0 || (h.Dest.Host == "") == !h.Dest.Addr.IsValid() {
			t.Fatalf("accepted %+v", h.Dest)
		}
		// What was accepted re-encodes to the bytes read.
		again, err := AppendHeader(nil, h, &testKey)
		if err != nil || !bytes.Equal(again, in[:read]) {
			t.Fatalf("re-encoded %x, read %x (%v)", again, in[:read], err)
		}
	})
}
