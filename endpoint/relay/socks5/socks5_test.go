package socks5

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// Messages of the client side and of the server side, byte for byte.
var (
	greetNoAuth   = []byte{5, 1, 0x00}
	greetUserPass = []byte{5, 1, 0x02}
	greetBoth     = []byte{5, 2, 0x00, 0x02}
	selNoAuth     = []byte{5, 0x00}
	selUserPass   = []byte{5, 0x02}
	selNone       = []byte{5, 0xFF}
	authOK        = []byte{1, 0x00}
	authFail      = []byte{1, 0x01}
	reqIPv4       = []byte{5, 1, 0, 1, 192, 0, 2, 1, 0, 80}
	reqIPv6       = []byte{5, 1, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x01, 0xbb}
	reqMapped     = []byte{5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1, 0, 80}
	reqDomain     = []byte{5, 1, 0, 3, 11, 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'c', 'o', 'm', 0x01, 0xbb}
)

var users = map[string]string{"alice": "secret"}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// authMsg is an RFC 1929 username/password request.
func authMsg(user, pass string) []byte {
	return cat([]byte{1, byte(len(user))}, []byte(user), []byte{byte(len(pass))}, []byte(pass))
}

func domainReq(cmd byte, host string, port uint16) []byte {
	b := append([]byte{5, cmd, 0, 3, byte(len(host))}, host...)
	return binary.BigEndian.AppendUint16(b, port)
}

func failReply(code ReplyCode) []byte { return []byte{5, byte(code), 0, 1, 0, 0, 0, 0, 0, 0} }

type readWriter struct {
	io.Reader
	io.Writer
}

var handshakeTests = []struct {
	name    string
	users   map[string]string
	in      []byte
	out     []byte // what the server writes back
	want    Destination
	wantErr string
}{
	{
		name: "no auth IPv4",
		in:   cat(greetNoAuth, reqIPv4),
		out:  selNoAuth,
		want: Destination{Addr: netip.MustParseAddrPort("192.0.2.1:80"), Port: 80},
	},
	{
		name: "no auth IPv6",
		in:   cat(greetNoAuth, reqIPv6),
		out:  selNoAuth,
		want: Destination{Addr: netip.MustParseAddrPort("[2001:db8::1]:443"), Port: 443},
	},
	{
		name: "IPv4-mapped IPv6 stays mapped",
		in:   cat(greetNoAuth, reqMapped),
		out:  selNoAuth,
		want: Destination{Addr: netip.MustParseAddrPort("[::ffff:192.0.2.1]:80"), Port: 80},
	},
	{
		name: "no auth domain",
		in:   cat(greetNoAuth, reqDomain),
		out:  selNoAuth,
		want: Destination{Host: "example.com", Port: 443},
	},
	{
		name: "longest domain",
		in:   cat(greetNoAuth, domainReq(1, strings.Repeat("a", 255), 8080)),
		out:  selNoAuth,
		want: Destination{Host: strings.Repeat("a", 255), Port: 8080},
	},
	{
		name: "both offered, no users: no auth",
		in:   cat(greetBoth, reqIPv4),
		out:  selNoAuth,
		want: Destination{Addr: netip.MustParseAddrPort("192.0.2.1:80"), Port: 80},
	},
	{
		name:  "user/pass domain",
		users: users,
		in:    cat(greetUserPass, authMsg("alice", "secret"), reqDomain),
		out:   cat(selUserPass, authOK),
		want:  Destination{Host: "example.com", Port: 443},
	},
	{
		name:  "both offered, users: user/pass",
		users: users,
		in:    cat(greetBoth, authMsg("alice", "secret"), reqIPv6),
		out:   cat(selUserPass, authOK),
		want:  Destination{Addr: netip.MustParseAddrPort("[2001:db8::1]:443"), Port: 443},
	},
	{
		name:    "wrong password",
		users:   users,
		in:      cat(greetUserPass, authMsg("alice", "hunter2"), reqIPv4),
		out:     cat(selUserPass, authFail),
		wantErr: `socks5: auth: user "alice" rejected`,
	},
	{
		name:    "unknown user with empty password",
		users:   users,
		in:      cat(greetUserPass, authMsg("bob", ""), reqIPv4),
		out:     cat(selUserPass, authFail),
		wantErr: `socks5: auth: user "bob" rejected`,
	},
	{
		name:    "empty user list accepts nobody",
		users:   map[string]string{},
		in:      cat(greetUserPass, authMsg("alice", "secret"), reqIPv4),
		out:     cat(selUserPass, authFail),
		wantErr: `socks5: auth: user "alice" rejected`,
	},
	{
		name:    "auth version 5",
		users:   users,
		in:      cat(greetUserPass, []byte{5, 5}, []byte("alice"), []byte{6}, []byte("secret")),
		out:     cat(selUserPass, authFail),
		wantErr: "socks5: auth: version 5, want 1",
	},
	{
		name:    "only no auth offered, users required",
		users:   users,
		in:      cat(greetNoAuth, reqIPv4),
		out:     selNone,
		wantErr: "socks5: greeting: no acceptable method: client offers [0x00], want 0x02 (username/password)",
	},
	{
		name:    "only user/pass offered, no users",
		in:      cat(greetUserPass, authMsg("alice", "secret"), reqIPv4),
		out:     selNone,
		wantErr: "socks5: greeting: no acceptable method: client offers [0x02], want 0x00 (no authentication)",
	},
	{
		name:    "no methods",
		in:      []byte{5, 0},
		out:     selNone,
		wantErr: "socks5: greeting: no acceptable method: client offers [], want 0x00 (no authentication)",
	},
	{
		name:    "version 4 greeting gets no reply",
		in:      []byte{4, 1, 0, 80, 192, 0, 2, 1, 0},
		wantErr: "socks5: greeting: version 4, want 5",
	},
	{
		name:    "request version 4",
		in:      cat(greetNoAuth, []byte{4, 1, 0, 1, 192, 0, 2, 1, 0, 80}),
		out:     cat(selNoAuth, failReply(GeneralFailure)),
		wantErr: "socks5: request: version 4, want 5",
	},
	{
		name:    "BIND",
		in:      cat(greetNoAuth, []byte{5, 2, 0, 1, 192, 0, 2, 1, 0, 80}),
		out:     cat(selNoAuth, failReply(CommandNotSupported)),
		wantErr: "socks5: request: command 2 (BIND) not supported",
	},
	{
		name:    "UDP ASSOCIATE",
		in:      cat(greetNoAuth, domainReq(3, "example.com", 53)),
		out:     cat(selNoAuth, failReply(CommandNotSupported)),
		wantErr: "socks5: request: command 3 (UDP ASSOCIATE) not supported",
	},
	{
		name:    "address type 9",
		in:      cat(greetNoAuth, []byte{5, 1, 0, 9, 1, 2, 3, 4, 0, 80}),
		out:     cat(selNoAuth, failReply(AddressNotSupported)),
		wantErr: "socks5: request: address type 9 not supported",
	},
	{
		name:    "empty domain",
		in:      cat(greetNoAuth, domainReq(1, "", 80)),
		out:     cat(selNoAuth, failReply(GeneralFailure)),
		wantErr: "socks5: request: empty domain name",
	},
	{
		name:    "NUL in domain",
		in:      cat(greetNoAuth, domainReq(1, "example.com\x00.evil", 80)),
		out:     cat(selNoAuth, failReply(GeneralFailure)),
		wantErr: "socks5: request: domain name contains NUL",
	},
	{
		name:    "hang-up before greeting",
		in:      nil,
		wantErr: "socks5: greeting: EOF",
	},
	{
		name:    "hang-up mid request",
		in:      cat(greetNoAuth, reqIPv6[:10]),
		out:     selNoAuth,
		wantErr: "socks5: request: unexpected EOF",
	},
}

func TestHandshake(t *testing.T) {
	for _, tt := range handshakeTests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			got, err := Handshake(readWriter{bytes.NewReader(tt.in), &out}, Config{Users: tt.users})
			if !bytes.Equal(out.Bytes(), tt.out) {
				t.Errorf("server wrote % x, want % x", out.Bytes(), tt.out)
			}
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Handshake error %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "hunter2") {
					t.Errorf("error %q reveals a password", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Handshake: %v", err)
			}
			if got != tt.want {
				t.Errorf("Handshake = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestHandshakeReadsExactly checks both edges of a valid handshake: any
// prefix of it is a hang-up, and the bytes after it stay in the reader.
func TestHandshakeReadsExactly(t *testing.T) {
	const tail = "GET / HTTP/1.1\r\n"
	for _, tt := range handshakeTests {
		if tt.wantErr != "" {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Users: tt.users}
			for i := range len(tt.in) {
				_, err := Handshake(readWriter{bytes.NewReader(tt.in[:i]), io.Discard}, cfg)
				want := io.ErrUnexpectedEOF
				if i == 0 {
					want = io.EOF
				}
				if !errors.Is(err, want) {
					t.Errorf("Handshake of the first %d of %d bytes: error %v, want %v", i, len(tt.in), err, want)
				}
			}

			r := bytes.NewReader(cat(tt.in, []byte(tail)))
			if _, err := Handshake(readWriter{r, io.Discard}, cfg); err != nil {
				t.Fatalf("Handshake: %v", err)
			}
			if rest, _ := io.ReadAll(r); string(rest) != tail {
				t.Errorf("left %q unread, want %q", rest, tail)
			}
		})
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestWriteErrors(t *testing.T) {
	_, err := Handshake(readWriter{bytes.NewReader(cat(greetNoAuth, reqIPv4)), failingWriter{}}, Config{})
	if want := "socks5: greeting: write reply: broken pipe"; err == nil || err.Error() != want {
		t.Errorf("Handshake error %v, want %q", err, want)
	}
	err = Reply(failingWriter{}, Succeeded, netip.AddrPort{})
	if want := "socks5: reply: broken pipe"; err == nil || err.Error() != want {
		t.Errorf("Reply error %v, want %q", err, want)
	}
}

func TestReply(t *testing.T) {
	tests := []struct {
		code  ReplyCode
		bound netip.AddrPort
		want  []byte
	}{
		{Succeeded, netip.AddrPort{}, []byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0}},
		{Succeeded, netip.MustParseAddrPort("198.51.100.7:1080"), []byte{5, 0, 0, 1, 198, 51, 100, 7, 0x04, 0x38}},
		{HostUnreachable, netip.MustParseAddrPort("[2001:db8::1]:443"),
			[]byte{5, 4, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x01, 0xbb}},
		{Succeeded, netip.MustParseAddrPort("[::ffff:192.0.2.1]:80"),
			[]byte{5, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1, 0, 80}},
		{ConnectionRefused, netip.MustParseAddrPort("[fe80::1%eth0]:22"),
			[]byte{5, 5, 0, 4, 0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 22}},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		if err := Reply(&out, tt.code, tt.bound); err != nil {
			t.Fatalf("Reply(%v, %v): %v", tt.code, tt.bound, err)
		}
		if !bytes.Equal(out.Bytes(), tt.want) {
			t.Errorf("Reply(%v, %v) wrote % x, want % x", tt.code, tt.bound, out.Bytes(), tt.want)
		}
	}
}

func TestReplyCodeString(t *testing.T) {
	for code, want := range map[ReplyCode]string{
		Succeeded:           "succeeded",
		TTLExpired:          "TTL expired",
		AddressNotSupported: "address type not supported",
		9:                   "reply code 0x09",
	} {
		if got := code.String(); got != want {
			t.Errorf("ReplyCode(%d).String() = %q, want %q", byte(code), got, want)
		}
	}
}

func TestDestinationString(t *testing.T) {
	for _, tt := range []struct {
		d    Destination
		want string
	}{
		{Destination{Addr: netip.MustParseAddrPort("1.2.3.4:80"), Port: 80}, "1.2.3.4:80"},
		{Destination{Addr: netip.MustParseAddrPort("[::1]:80"), Port: 80}, "[::1]:80"},
		{Destination{Host: "example.com", Port: 443}, "example.com:443"},
		// A client may send an IPv6 literal as a domain name.
		{Destination{Host: "::1", Port: 443}, "[::1]:443"},
	} {
		if got := tt.d.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.d, got, tt.want)
		}
	}
}

// dialSOCKS is the client side of RFC 1928 and RFC 1929, written from the
// RFCs independently of the server code. An empty user offers only "no
// authentication"; otherwise it offers both, as curl does.
func dialSOCKS(c net.Conn, user, pass string, dst Destination) (ReplyCode, netip.AddrPort, error) {
	greet := greetNoAuth
	if user != "" {
		greet = greetBoth
	}
	if _, err := c.Write(greet); err != nil {
		return 0, netip.AddrPort{}, err
	}
	var b [256]byte
	if _, err := io.ReadFull(c, b[:2]); err != nil {
		return 0, netip.AddrPort{}, err
	}
	switch {
	case b[0] != 5:
		return 0, netip.AddrPort{}, fmt.Errorf("method selection version %d", b[0])
	case b[1] == 0x02:
		if _, err := c.Write(authMsg(user, pass)); err != nil {
			return 0, netip.AddrPort{}, err
		}
		if _, err := io.ReadFull(c, b[:2]); err != nil {
			return 0, netip.AddrPort{}, err
		}
		if b[1] != 0 {
			return 0, netip.AddrPort{}, fmt.Errorf("auth status %d", b[1])
		}
	case b[1] != 0x00:
		return 0, netip.AddrPort{}, fmt.Errorf("method %#x", b[1])
	}

	req := domainReq(1, dst.Host, dst.Port)
	if dst.Addr.IsValid() {
		atyp := byte(1)
		if dst.Addr.Addr().Is6() {
			atyp = 4
		}
		req = append([]byte{5, 1, 0, atyp}, dst.Addr.Addr().AsSlice()...)
		req = binary.BigEndian.AppendUint16(req, dst.Port)
	}
	if _, err := c.Write(req); err != nil {
		return 0, netip.AddrPort{}, err
	}

	if _, err := io.ReadFull(c, b[:4]); err != nil {
		return 0, netip.AddrPort{}, err
	}
	code, n := ReplyCode(b[1]), 0
	switch b[3] {
	case 1:
		n = 4
	case 4:
		n = 16
	default:
		return 0, netip.AddrPort{}, fmt.Errorf("reply address type %d", b[3])
	}
	if _, err := io.ReadFull(c, b[:n+2]); err != nil {
		return 0, netip.AddrPort{}, err
	}
	addr, _ := netip.AddrFromSlice(b[:n])
	return code, netip.AddrPortFrom(addr, binary.BigEndian.Uint16(b[n:])), nil
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name       string
		users      map[string]string
		user, pass string
		dst        Destination
		reply      ReplyCode
		bound      netip.AddrPort
		wantBound  netip.AddrPort
		wantErr    string // of the client; the server's is then non-nil too
	}{
		{
			name:      "no auth IPv4, relayed",
			dst:       Destination{Addr: netip.MustParseAddrPort("192.0.2.1:80"), Port: 80},
			bound:     netip.MustParseAddrPort("198.51.100.7:40000"),
			wantBound: netip.MustParseAddrPort("198.51.100.7:40000"),
		},
		{
			name:      "user/pass domain, relayed",
			users:     users,
			user:      "alice",
			pass:      "secret",
			dst:       Destination{Host: "example.com", Port: 443},
			bound:     netip.MustParseAddrPort("[2001:db8::7]:40000"),
			wantBound: netip.MustParseAddrPort("[2001:db8::7]:40000"),
		},
		{
			name:      "caller refuses IPv6",
			dst:       Destination{Addr: netip.MustParseAddrPort("[2001:db8::1]:443"), Port: 443},
			reply:     HostUnreachable,
			wantBound: netip.MustParseAddrPort("0.0.0.0:0"),
		},
		{
			name:    "wrong password",
			users:   users,
			user:    "alice",
			pass:    "hunter2",
			dst:     Destination{Host: "example.com", Port: 443},
			wantErr: "auth status 1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, cli := net.Pipe()
			defer cli.Close()
			deadline := time.Now().Add(5 * time.Second)
			srv.SetDeadline(deadline)
			cli.SetDeadline(deadline)

			type result struct {
				dst Destination
				err error
			}
			done := make(chan result, 1)
			go func() {
				defer srv.Close()
				dst, err := Handshake(srv, Config{Users: tt.users})
				if err == nil {
					err = Reply(srv, tt.reply, tt.bound)
				}
				if err == nil && tt.reply == Succeeded {
					// The relay: echo what follows the handshake.
					_, err = io.CopyN(srv, srv, 4)
				}
				done <- result{dst, err}
			}()

			code, bound, err := dialSOCKS(cli, tt.user, tt.pass, tt.dst)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Errorf("client error %v, want %q", err, tt.wantErr)
				}
				if res := <-done; res.err == nil {
					t.Errorf("Handshake succeeded with %v, want an error", res.dst)
				}
				return
			}
			if err != nil {
				t.Fatalf("client: %v", err)
			}
			if code != tt.reply || bound != tt.wantBound {
				t.Errorf("client got reply %v bound %v, want %v bound %v", code, bound, tt.reply, tt.wantBound)
			}
			if code == Succeeded {
				var echo [4]byte
				if _, err := cli.Write([]byte("ping")); err != nil {
					t.Fatalf("client write: %v", err)
				}
				if _, err := io.ReadFull(cli, echo[:]); err != nil || string(echo[:]) != "ping" {
					t.Errorf("relayed %q, %v; want \"ping\"", echo, err)
				}
			}
			res := <-done
			if res.err != nil {
				t.Fatalf("server: %v", res.err)
			}
			if res.dst != tt.dst {
				t.Errorf("Handshake = %+v, want %+v", res.dst, tt.dst)
			}
		})
	}
}

func FuzzHandshake(f *testing.F) {
	for _, tt := range handshakeTests {
		f.Add(tt.in, tt.users != nil)
	}
	f.Fuzz(func(t *testing.T, in []byte, withUsers bool) {
		cfg := Config{}
		if withUsers {
			cfg.Users = users
		}
		handshake := func(in []byte) (Destination, []byte, int, error) {
			r, out := bytes.NewReader(in), new(bytes.Buffer)
			dst, err := Handshake(readWriter{r, out}, cfg)
			return dst, out.Bytes(), len(in) - r.Len(), err
		}
		dst, out, n, err := handshake(in)
		if n > len(in) {
			t.Fatalf("consumed %d of %d bytes", n, len(in))
		}
		if err != nil {
			return
		}
		if dst.Addr.IsValid() == (dst.Host != "") {
			t.Fatalf("Destination %+v: want exactly one of Addr and Host", dst)
		}
		if dst.Addr.IsValid() && dst.Addr.Port() != dst.Port {
			t.Fatalf("Destination %+v: Port differs from Addr's", dst)
		}
		if len(dst.Host) > 255 || strings.IndexByte(dst.Host, 0) >= 0 {
			t.Fatalf("Destination host %q", dst.Host)
		}
		wantOut := selNoAuth
		if withUsers {
			wantOut = cat(selUserPass, authOK)
		}
		if !bytes.Equal(out, wantOut) {
			t.Fatalf("server wrote % x on success, want % x", out, wantOut)
		}
		// Exactly the handshake was read: it is enough, and all of it was needed.
		if again, _, _, err := handshake(in[:n]); err != nil || again != dst {
			t.Fatalf("Handshake of the %d bytes read = %+v, %v; want %+v", n, again, err, dst)
		}
		if _, _, _, err := handshake(in[:n-1]); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("Handshake without the last byte read: error %v, want unexpected EOF", err)
		}
	})
}
