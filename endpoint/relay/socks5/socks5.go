package socks5

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Wire constants of RFC 1928 and RFC 1929.
const (
	version        = 0x05
	authVersion    = 0x01 // RFC 1929 subnegotiation
	methodNoAuth   = 0x00
	methodUserPass = 0x02
	methodNone     = 0xFF // no acceptable methods
	cmdConnect     = 0x01
	atypIPv4       = 0x01
	atypDomain     = 0x03
	atypIPv6       = 0x04
	authSuccess    = 0x00
	authFailure    = 0x01
)

// Destination is where the client asked to go: an IP address and port, or
// a host name and port (ATYP 3).
type Destination struct {
	Addr netip.AddrPort // valid when the client sent an IPv4/IPv6 address
	Host string         // the domain name when ATYP was 3 (then Addr is invalid), at most 255 bytes
	Port uint16
}

// String returns "1.2.3.4:80", "[::1]:80" or "example.com:443".
func (d Destination) String() string {
	if d.Addr.IsValid() {
		return d.Addr.String()
	}
	return net.JoinHostPort(d.Host, strconv.Itoa(int(d.Port)))
}

// Config of the server side.
type Config struct {
	// Users, when non-nil, requires username/password (method 0x02) and
	// accepts only these pairs; when nil, no authentication (method 0x00).
	// An empty non-nil map accepts nobody.
	Users map[string]string
}

// ReplyCode is the REP field of a SOCKS5 reply.
type ReplyCode byte

// Reply codes of RFC 1928, section 6.
const (
	Succeeded           ReplyCode = 0x00
	GeneralFailure      ReplyCode = 0x01
	NotAllowed          ReplyCode = 0x02
	NetworkUnreachable  ReplyCode = 0x03
	HostUnreachable     ReplyCode = 0x04
	ConnectionRefused   ReplyCode = 0x05
	TTLExpired          ReplyCode = 0x06
	CommandNotSupported ReplyCode = 0x07
	AddressNotSupported ReplyCode = 0x08
)

var replyNames = [...]string{
	Succeeded:           "succeeded",
	GeneralFailure:      "general SOCKS server failure",
	NotAllowed:          "connection not allowed by ruleset",
	NetworkUnreachable:  "network unreachable",
	HostUnreachable:     "host unreachable",
	ConnectionRefused:   "connection refused",
	TTLExpired:          "TTL expired",
	CommandNotSupported: "command not supported",
	AddressNotSupported: "address type not supported",
}

// String returns the RFC's wording of the code.
func (c ReplyCode) String() string {
	if int(c) < len(replyNames) {
		return replyNames[c]
	}
	return fmt.Sprintf("reply code 0x%02x", byte(c))
}

// Reply writes a reply with the given code and bound address (invalid
// AddrPort → 0.0.0.0:0) in a single Write, so that it reaches the client
// ahead of any relayed byte. An IPv4-mapped IPv6 address is sent as IPv6,
// as given.
func Reply(w io.Writer, code ReplyCode, bound netip.AddrPort) error {
	b := make([]byte, 0, 4+16+2)
	b = append(b, version, byte(code), 0x00)
	switch addr := bound.Addr(); {
	case addr.Is4():
		b = append(b, atypIPv4)
		b = append(b, addr.AsSlice()...)
	case addr.Is6():
		b = append(b, atypIPv6)
		b = append(b, addr.AsSlice()...)
	default:
		b = append(b, atypIPv4, 0, 0, 0, 0)
	}
	b = binary.BigEndian.AppendUint16(b, bound.Port())
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("socks5: reply: %w", err)
	}
	return nil
}

// Handshake reads the client's method greeting, negotiates a method,
// authenticates, and reads the request. It reads exactly the bytes of the
// handshake from rw, never more (a bufio reader must not be used on rw:
// the bytes after the request belong to the relayed stream). For a CONNECT
// request it returns the destination without replying (the caller replies
// with Reply after deciding).
//
// On a request it cannot serve it writes the proper failure reply itself
// (command not supported 0x07, address type not supported 0x08, general
// failure 0x01 for a malformed request, method rejection 0xFF, auth
// failure status) and returns an error; the caller then closes the
// connection. A greeting whose version is not 5 gets no reply, since the
// client would not understand one. A client that hangs up before sending
// anything gives an error wrapping io.EOF, one that hangs up mid-handshake
// an error wrapping io.ErrUnexpectedEOF.
func Handshake(rw io.ReadWriter, cfg Config) (Destination, error) {
	// Every field is at most 255 bytes plus a 2-byte port.
	var buf [255 + 2]byte

	// Greeting: VER NMETHODS METHODS...
	if _, err := io.ReadFull(rw, buf[:2]); err != nil {
		return Destination{}, fmt.Errorf("socks5: greeting: %w", err)
	}
	if buf[0] != version {
		return Destination{}, fmt.Errorf("socks5: greeting: version %d, want %d", buf[0], version)
	}
	methods := buf[:buf[1]]
	if err := readFull(rw, methods, "greeting"); err != nil {
		return Destination{}, err
	}
	want, wantName := byte(methodNoAuth), "no authentication"
	if cfg.Users != nil {
		want, wantName = methodUserPass, "username/password"
	}
	chosen := byte(methodNone)
	for _, m := range methods {
		if m == want {
			chosen = want
		}
	}
	if err := write(rw, "greeting", version, chosen); err != nil {
		return Destination{}, err
	}
	if chosen == methodNone {
		return Destination{}, fmt.Errorf("socks5: greeting: no acceptable method: client offers [% #x], want %#02x (%s)",
			methods, want, wantName)
	}

	if cfg.Users != nil {
		if err := authenticate(rw, cfg.Users, buf[:]); err != nil {
			return Destination{}, err
		}
	}
	return request(rw, buf[:])
}

// authenticate runs the RFC 1929 subnegotiation:
// VER ULEN UNAME PLEN PASSWD, answered by VER STATUS.
func authenticate(rw io.ReadWriter, users map[string]string, buf []byte) error {
	if err := readFull(rw, buf[:2], "auth"); err != nil {
		return err
	}
	if buf[0] != authVersion {
		fail(rw, authVersion, authFailure)
		return fmt.Errorf("socks5: auth: version %d, want %d", buf[0], authVersion)
	}
	name := buf[:buf[1]]
	if err := readFull(rw, name, "auth"); err != nil {
		return err
	}
	user := string(name)
	if err := readFull(rw, buf[:1], "auth"); err != nil {
		return err
	}
	passwd := buf[:buf[0]]
	if err := readFull(rw, passwd, "auth"); err != nil {
		return err
	}
	// Comparing digests keeps the time independent of the password's
	// length as well as of its content.
	wantPass, known := users[user]
	wantSum, gotSum := sha256.Sum256([]byte(wantPass)), sha256.Sum256(passwd)
	match := subtle.ConstantTimeCompare(wantSum[:], gotSum[:]) == 1
	if !known || !match {
		fail(rw, authVersion, authFailure)
		return fmt.Errorf("socks5: auth: user %q rejected", user)
	}
	return write(rw, "auth", authVersion, authSuccess)
}

// request reads VER CMD RSV ATYP DST.ADDR DST.PORT. The whole request is
// read before an unsupported command is refused, so that a client still
// writing it is not left blocked; only an unknown address type, whose
// length cannot be known, cuts the read short.
func request(rw io.ReadWriter, buf []byte) (Destination, error) {
	if err := readFull(rw, buf[:4], "request"); err != nil {
		return Destination{}, err
	}
	ver, cmd, atyp := buf[0], buf[1], buf[3] // RSV (buf[2]) is ignored, as clients vary
	if ver != version {
		replyFailure(rw, GeneralFailure)
		return Destination{}, fmt.Errorf("socks5: request: version %d, want %d", ver, version)
	}
	var dst Destination
	switch atyp {
	case atypIPv4, atypIPv6:
		n := 4
		if atyp == atypIPv6 {
			n = 16
		}
		if err := readFull(rw, buf[:n+2], "request"); err != nil {
			return Destination{}, err
		}
		addr, _ := netip.AddrFromSlice(buf[:n]) // never unmapped: the caller decides
		dst.Port = binary.BigEndian.Uint16(buf[n:])
		dst.Addr = netip.AddrPortFrom(addr, dst.Port)
	case atypDomain:
		if err := readFull(rw, buf[:1], "request"); err != nil {
			return Destination{}, err
		}
		n := int(buf[0])
		if err := readFull(rw, buf[:n+2], "request"); err != nil {
			return Destination{}, err
		}
		dst.Host = string(buf[:n])
		dst.Port = binary.BigEndian.Uint16(buf[n:])
		switch {
		case n == 0:
			replyFailure(rw, GeneralFailure)
			return Destination{}, errors.New("socks5: request: empty domain name")
		case strings.IndexByte(dst.Host, 0) >= 0:
			replyFailure(rw, GeneralFailure)
			return Destination{}, errors.New("socks5: request: domain name contains NUL")
		}
	default:
		replyFailure(rw, AddressNotSupported)
		return Destination{}, fmt.Errorf("socks5: request: address type %d not supported", atyp)
	}
	if cmd != cmdConnect {
		replyFailure(rw, CommandNotSupported)
		return Destination{}, fmt.Errorf("socks5: request: command %d (%s) not supported", cmd, commandName(cmd))
	}
	return dst, nil
}

func commandName(cmd byte) string {
	switch cmd {
	case 0x02:
		return "BIND"
	case 0x03:
		return "UDP ASSOCIATE"
	}
	return "unknown"
}

// readFull fills b from r. Past the first byte of the greeting, running
// out of input is always a hang-up mid-handshake.
func readFull(r io.Reader, b []byte, stage string) error {
	if _, err := io.ReadFull(r, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("socks5: %s: %w", stage, err)
	}
	return nil
}

func write(w io.Writer, stage string, b ...byte) error {
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("socks5: %s: write reply: %w", stage, err)
	}
	return nil
}

// fail and replyFailure write a refusal whose own write error is dropped:
// the connection is closed either way, and the refusal's reason is the
// error worth returning.
func fail(w io.Writer, b ...byte) { _, _ = w.Write(b) }

func replyFailure(w io.Writer, code ReplyCode) { _ = Reply(w, code, netip.AddrPort{}) }
