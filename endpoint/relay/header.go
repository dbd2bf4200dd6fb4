package relay

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/mptcpd-go/mptcpd/endpoint/relay/socks5"
)

// Destination is where a relayed connection goes: an address, or a host
// name the relay resolves (from a SOCKS5 client that sent a name).
type Destination = socks5.Destination

// The header a gateway sends first on every relay connection, in the same
// flight as the client's first bytes (in the SYN with TCP Fast Open):
//
//	offset size
//	0      1    version, 1
//	1      1    address type: 1 IPv4, 4 IPv6, 3 host name (SOCKS5's numbers)
//	2      2    length of the whole header, MAC included
//	4      8    the gateway's clock, Unix milliseconds
//	12     16   nonce, random
//	28     2    destination port
//	30     n    destination: 4 or 16 bytes, or a length byte and a name
//	30+n   16   MAC: HMAC-SHA256 under the shared key of bytes 0 to 30+n,
//	            truncated to 16 bytes
//
// Integers are big-endian. Nothing comes back: the relay answers by
// relaying, or with a reset.
const (
	headerVersion = 1
	atypIPv4      = 1
	atypHost      = 3
	atypIPv6      = 4

	fixedLen  = 30
	macLen    = 16
	minHeader = fixedLen + 4 + macLen
	// MaxHeaderLen is the longest header: a 255-byte host name.
	MaxHeaderLen = fixedLen + 1 + 255 + macLen
	// KeyLen is the length of a shared key.
	KeyLen = 32
)

// Header is a relay connection's request.
type Header struct {
	Time  time.Time // when the gateway made it; milliseconds on the wire
	Nonce [16]byte
	Dest  Destination
}

// NewHeader is a header for dest with the time now and a fresh nonce.
func NewHeader(dest Destination, now time.Time) Header {
	h := Header{Time: now, Dest: dest}
	_, _ = rand.Read(h.Nonce[:]) // never fails (crypto/rand, Go ≥ 1.24)
	return h
}

// Key is a shared key between gateways and a relay.
type Key [KeyLen]byte

// GenerateKey makes a random key.
func GenerateKey() Key {
	var k Key
	_, _ = rand.Read(k[:])
	return k
}

// HeaderError is a header the relay refuses; nothing is dialed for it.
type HeaderError struct {
	Field string // what was wrong: "version", "address", "mac", "time", "nonce", ...
	Err   error
}

func (e *HeaderError) Error() string { return "relay header: " + e.Field + ": " + e.Err.Error() }
func (e *HeaderError) Unwrap() error { return e.Err }

func headerErr(field, format string, args ...any) error {
	return &HeaderError{Field: field, Err: fmt.Errorf(format, args...)}
}

// ErrReplay is a header seen before, within the replay window.
var ErrReplay = errors.New("nonce seen before: a replayed header")

// AppendHeader appends h, authenticated with key, to b.
func AppendHeader(b []byte, h Header, key *Key) ([]byte, error) {
	d := h.Dest
	var atyp byte
	var addr []byte
	switch {
	case d.Host != "":
		if err := checkHost(d.Host); err != nil {
			return nil, err
		}
		atyp = atypHost
		addr = append([]byte{byte(len(d.Host))}, d.Host...)
	case d.Addr.Addr().Is4():
		atyp = atypIPv4
		a := d.Addr.Addr().As4()
		addr = a[:]
	case d.Addr.Addr().Is6():
		atyp = atypIPv6
		a := d.Addr.Addr().As16()
		addr = a[:]
	default:
		return nil, headerErr("address", "no destination")
	}
	port := d.Port
	if d.Host == "" {
		port = d.Addr.Port()
	}
	start := len(b)
	b = append(b, headerVersion, atyp)
	b = binary.BigEndian.AppendUint16(b, uint16(fixedLen+len(addr)+macLen))
	b = binary.BigEndian.AppendUint64(b, uint64(h.Time.UnixMilli()))
	b = append(b, h.Nonce[:]...)
	b = binary.BigEndian.AppendUint16(b, port)
	b = append(b, addr...)
	return append(b, mac(key, b[start:])...), nil
}

func mac(key *Key, msg []byte) []byte {
	m := hmac.New(sha256.New, key[:])
	m.Write(msg)
	return m.Sum(nil)[:macLen]
}

// ReadHeader reads exactly one header from r, never a byte more, and
// checks its MAC against keys (several while a key is being replaced).
// It checks the form and the MAC only; the relay's Replay window checks
// time and nonce. A stream that ends before its first byte gives io.EOF
// itself: a gateway closing a connection it kept warm and never used.
func ReadHeader(r io.Reader, keys []Key) (Header, error) {
	var buf [MaxHeaderLen]byte
	if n, err := io.ReadFull(r, buf[:4]); err != nil {
		if n == 0 && err == io.EOF {
			return Header{}, io.EOF
		}
		return Header{}, headerErr("read", "%w", eofIsUnexpected(err))
	}
	if buf[0] != headerVersion {
		return Header{}, headerErr("version", "%d, want %d (not a relay client, or a newer one)", buf[0], headerVersion)
	}
	n := int(binary.BigEndian.Uint16(buf[2:4]))
	var want int
	switch buf[1] {
	case atypIPv4:
		want = fixedLen + 4 + macLen
	case atypIPv6:
		want = fixedLen + 16 + macLen
	case atypHost:
		// The name's own length byte is checked once read.
		if n < fixedLen+2+macLen || n > MaxHeaderLen {
			return Header{}, headerErr("length", "%d bytes for a host name, want %d to %d", n, fixedLen+2+macLen, MaxHeaderLen)
		}
		want = n
	default:
		return Header{}, headerErr("address", "type %d, want 1 (IPv4), 3 (name) or 4 (IPv6)", buf[1])
	}
	if n != want {
		return Header{}, headerErr("length", "%d bytes, want %d for address type %d", n, want, buf[1])
	}
	if _, err := io.ReadFull(r, buf[4:n]); err != nil {
		return Header{}, headerErr("read", "%w", eofIsUnexpected(err))
	}
	body, sum := buf[:n-macLen], buf[n-macLen:n]
	ok := false
	for i := range keys {
		if hmac.Equal(mac(&keys[i], body), sum) {
			ok = true
		}
	}
	if !ok {
		return Header{}, headerErr("mac", "does not match (a different key, or a forged header)")
	}
	h := Header{Time: time.UnixMilli(int64(binary.BigEndian.Uint64(body[4:12])))}
	copy(h.Nonce[:], body[12:28])
	port := binary.BigEndian.Uint16(body[28:30])
	addr := body[30:]
	switch buf[1] {
	case atypIPv4:
		h.Dest.Addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte(addr)), port)
	case atypIPv6:
		h.Dest.Addr = netip.AddrPortFrom(netip.AddrFrom16([16]byte(addr)), port)
	case atypHost:
		if int(addr[0]) != len(addr)-1 {
			return Header{}, headerErr("address", "name length %d in %d bytes", addr[0], len(addr)-1)
		}
		h.Dest.Host = string(addr[1:])
		if err := checkHost(h.Dest.Host); err != nil {
			return Header{}, err
		}
	}
	h.Dest.Port = port
	if port == 0 {
		return Header{}, headerErr("port", "0")
	}
	return h, nil
}

// checkHost accepts what DNS can name: 1 to 255 bytes of letters,
// digits, '-', '_' and '.', so that a name cannot smuggle anything into a
// resolver or a log line.
func checkHost(h string) error {
	if len(h) == 0 || len(h) > 255 {
		return headerErr("address", "host name of %d bytes, want 1 to 255", len(h))
	}
	if i := strings.IndexFunc(h, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_')
	}); i >= 0 {
		return headerErr("address", "host name %q: byte %d is not a letter, digit, '-', '_' or '.'", h, i)
	}
	return nil
}

func eofIsUnexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
