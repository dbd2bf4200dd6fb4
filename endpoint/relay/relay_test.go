package relay

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/endpoint/gate"
)

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// destination is an echo server that counts the connections it accepts:
// the tests' witness that nothing was dialed.
type destination struct {
	addr     netip.AddrPort
	accepted atomic.Int64
}

func startDestination(t *testing.T) *destination {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	d := &destination{addr: ln.Addr().(*net.TCPAddr).AddrPort()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			d.accepted.Add(1)
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return d
}

func startRelay(t *testing.T, cfg ServerConfig) *Server {
	t.Helper()
	s, stop := serveRelay(t, cfg)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// serveRelay starts a relay; stop ends its Serve and waits for it.
func serveRelay(t *testing.T, cfg ServerConfig) (s *Server, stop func() error) {
	t.Helper()
	cfg.Listen = []string{"127.0.0.1:0"}
	if cfg.Keys == nil {
		cfg.Keys = []Key{testKey}
	}
	if cfg.Policy == nil {
		cfg.Policy = &DestPolicy{Allow: loopback}
	}
	if cfg.Limits == (gate.Limits{}) {
		cfg.Limits = gate.Limits{MaxConnections: 100, MaxPerSource: 100, Rate: 1000, Burst: 1000}
	}
	cfg.Logger = testLogger()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Listen(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	return s, sync.OnceValue(func() error {
		cancel()
		return <-done
	})
}

func startGateway(t *testing.T, relay *Server, cfg GatewayConfig) *Gateway {
	t.Helper()
	cfg.Relay = relay.Addrs()[0].String()
	cfg.Key = testKey
	cfg.SOCKS = []string{"127.0.0.1:0"}
	cfg.Limits = gate.Limits{MaxConnections: 100, MaxPerSource: 100, Rate: 1000, Burst: 1000}
	cfg.Logger = testLogger()
	ctx, cancel := context.WithCancel(context.Background())
	g, err := ListenGateway(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return g
}

// socksConnect opens a SOCKS5 connection to dst through the gateway.
func socksConnect(t *testing.T, g *Gateway, dst netip.AddrPort) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", g.SOCKSAddrs()[0].String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	a := dst.Addr().As4()
	req := []byte{5, 1, 0, 5, 1, 0, 1, a[0], a[1], a[2], a[3], byte(dst.Port() >> 8), byte(dst.Port())}
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 2+10)
	if _, err := io.ReadFull(c, reply); err != nil {
		t.Fatalf("SOCKS reply: %v", err)
	}
	if reply[0] != 5 || reply[1] != 0 || reply[3] != 0 {
		t.Fatalf("SOCKS reply %x", reply)
	}
	return c.(*net.TCPConn)
}

func TestRelayEndToEnd(t *testing.T) {
	dst := startDestination(t)
	r := startRelay(t, ServerConfig{})
	g := startGateway(t, r, GatewayConfig{})
	c := socksConnect(t, g, dst.addr)
	br := bufio.NewReader(c)
	for _, line := range []string{"hello\n", "world\n"} {
		if _, err := c.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
		if got, err := br.ReadString('\n'); err != nil || got != line {
			t.Fatalf("echo %q, %v", got, err)
		}
	}
	// A half-close reaches the destination, whose close comes back.
	_ = c.CloseWrite()
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("after half-close: %q, %v", rest, err)
	}
	waitFor(t, "relay counts", func() bool { s := r.Stats(); return s.Relayed == 1 && s.Active == 0 })
	if s := r.Stats(); s.Up != 12 || s.Down != 12 || s.Resets != 0 {
		t.Errorf("relay stats %+v", s)
	}
	if !r.MPTCP() {
		t.Log("MPTCP unavailable: relayed over plain TCP")
	}
}

// TestRelayRefusedDestination: a closed port behind the relay reaches
// the client as a reset, as a direct connection would.
func TestRelayRefusedDestination(t *testing.T) {
	r := startRelay(t, ServerConfig{})
	g := startGateway(t, r, GatewayConfig{})
	closed := closedPort(t)
	c := socksConnect(t, g, closed)
	_, err := c.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read: %v, want a reset", err)
	}
	waitFor(t, "dial refusal counted", func() bool { return r.Stats().Refused["dial"] == 1 })
}

func TestRelayPolicyRefuses(t *testing.T) {
	dst := startDestination(t)
	r := startRelay(t, ServerConfig{Policy: &DestPolicy{}}) // loopback not allowed
	g := startGateway(t, r, GatewayConfig{})
	c := socksConnect(t, g, dst.addr)
	_, err := c.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read: %v, want a reset", err)
	}
	waitFor(t, "policy refusal counted", func() bool { return r.Stats().Refused["policy"] == 1 })
	if n := dst.accepted.Load(); n != 0 {
		t.Errorf("the destination saw %d connections", n)
	}
}

// TestRelayHostileHeaders: nothing but a valid, fresh header from a key
// holder makes the relay dial; everything else is reset.
func TestRelayHostileHeaders(t *testing.T) {
	dst := startDestination(t)
	r := startRelay(t, ServerConfig{HandshakeTimeout: 300 * time.Millisecond})
	header := func(key Key, at time.Time) []byte {
		b, err := AppendHeader(nil, NewHeader(Destination{Addr: dst.addr, Port: dst.addr.Port()}, at), &key)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	valid := header(testKey, time.Now())
	send := func(b []byte, close bool) error {
		c, err := net.DialTimeout("tcp", r.Addrs()[0].String(), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(append(bytes.Clone(b), "ping"...)); err != nil {
			return err
		}
		if close {
			_ = c.(*net.TCPConn).CloseWrite()
		}
		buf := make([]byte, 4)
		_, err = io.ReadFull(c, buf)
		return err
	}
	for _, tc := range []struct {
		name  string
		in    []byte
		close bool
	}{
		{"wrong key", header(otherKey, time.Now()), false},
		{"stale", header(testKey, time.Now().Add(-time.Hour)), false},
		{"future", header(testKey, time.Now().Add(time.Hour)), false},
		{"garbage", []byte("GET / HTTP/1.1\r\n\r\n"), false},
		{"oversized", append([]byte{1, 3, 0xff, 0xff}, make([]byte, 4000)...), false},
		{"truncated then silent", valid[:20], false},
		{"truncated then closed", valid[:20], true},
	} {
		if err := send(tc.in, tc.close); err == nil {
			t.Errorf("%s: relayed", tc.name)
		}
	}
	if n := dst.accepted.Load(); n != 0 {
		t.Fatalf("the destination saw %d connections from hostile headers", n)
	}
	// The valid header works once; its replay does not.
	if err := send(valid, false); err != nil {
		t.Fatalf("valid header: %v", err)
	}
	if err := send(valid, false); err == nil {
		t.Error("replayed header relayed")
	}
	if n := dst.accepted.Load(); n != 1 {
		t.Errorf("the destination saw %d connections, want the one valid", n)
	}
	st := r.Stats()
	for _, why := range []string{"header-mac", "header-time", "header-version", "header-length", "header-read", "header-nonce"} {
		if st.Refused[why] == 0 {
			t.Errorf("no %s refusal counted: %v", why, st.Refused)
		}
	}
}

func TestRelayNeedsKey(t *testing.T) {
	if _, err := Listen(context.Background(), ServerConfig{Listen: []string{"127.0.0.1:0"}}); err == nil {
		t.Fatal("a relay without a key started")
	}
}

func closedPort(t *testing.T) netip.AddrPort {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	return a
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRelayFlood: a flood of connections that never send a header takes
// no more than its source's share of the relay, nothing is dialed for
// it, and a gateway at another address is served meanwhile; once the
// handshake timeout frees the places, its source is served again.
func TestRelayFlood(t *testing.T) {
	dst := startDestination(t)
	const perSource, flood = 10, 200
	r := startRelay(t, ServerConfig{
		HandshakeTimeout: 2 * time.Second,
		Limits:           gate.Limits{MaxConnections: 100, MaxPerSource: perSource, Rate: 1e6, Burst: 1e6},
	})
	dial := func(from string) (*net.TCPConn, error) {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp", r.Addrs()[0].String())
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.TCPConn), nil
	}
	var conns []*net.TCPConn
	for range flood {
		c, err := dial("127.0.0.1")
		if errors.Is(err, syscall.ECONNRESET) {
			continue // refused before connect returned
		}
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// The refused are reset at once; the admitted wait for a header.
	waitFor(t, "refusals", func() bool { return r.Stats().Refused["max-per-source"] == flood-perSource })
	held := 0
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) {
			held++
		}
	}
	if held != perSource {
		t.Errorf("%d flood connections held by the relay, want %d", held, perSource)
	}
	// Another source, during the flood.
	valid := func(from string) error {
		c, err := dial(from)
		if err != nil {
			return err
		}
		h, err := AppendHeader(nil, NewHeader(Destination{Addr: dst.addr, Port: dst.addr.Port()}, time.Now()), &testKey)
		if err != nil {
			return err
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(append(h, "ping"...)); err != nil {
			return err
		}
		_, err = io.ReadFull(c, make([]byte, 4))
		return err
	}
	if err := valid("127.0.0.2"); err != nil {
		t.Fatalf("a gateway at another address during the flood: %v", err)
	}
	if err := valid("127.0.0.1"); err == nil {
		t.Fatal("the flooding source got past its limit")
	}
	// The handshake timeout frees the flooding source's places.
	waitFor(t, "handshake timeouts", func() bool { return r.Stats().Refused["header-read"] == perSource })
	if err := valid("127.0.0.1"); err != nil {
		t.Fatalf("after the flood: %v", err)
	}
	if n := dst.accepted.Load(); n != 2 {
		t.Errorf("the destination saw %d connections, want the two valid ones", n)
	}
}

// TestRelayDrain: a stopping relay takes no new connection, lets a
// running one finish, and resets one still running when its drain
// timeout is up, so that its client sees the cut.
func TestRelayDrain(t *testing.T) {
	dst := startDestination(t)
	for _, tc := range []struct {
		name   string
		finish bool // the client ends its connection while the relay drains
	}{{"finishes", true}, {"cut", false}} {
		t.Run(tc.name, func(t *testing.T) {
			const drain = 500 * time.Millisecond
			r, stop := serveRelay(t, ServerConfig{DrainTimeout: drain})
			g := startGateway(t, r, GatewayConfig{})
			c := socksConnect(t, g, dst.addr)
			br := bufio.NewReader(c)
			echo := func(line string) error {
				if _, err := c.Write([]byte(line)); err != nil {
					return err
				}
				got, err := br.ReadString('\n')
				if err == nil && got != line {
					err = fmt.Errorf("echo %q, want %q", got, line)
				}
				return err
			}
			if err := echo("before\n"); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			stopped := make(chan error, 1)
			go func() { stopped <- stop() }()
			waitFor(t, "listener closed", func() bool {
				c, err := net.DialTimeout("tcp", r.Addrs()[0].String(), time.Second)
				if err == nil {
					c.Close()
				}
				return err != nil
			})
			if err := echo("during\n"); err != nil {
				t.Fatalf("while draining: %v", err)
			}
			if tc.finish {
				c.Close()
				if err := <-stopped; err != nil {
					t.Fatal(err)
				}
				if took := time.Since(start); took >= drain {
					t.Errorf("stopped after %v: waited for the drain timeout, not for the connection", took)
				}
				return
			}
			if err := <-stopped; err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took < drain {
				t.Errorf("stopped after %v, before the drain timeout", took)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := br.ReadByte(); !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("after the drain timeout: %v, want a reset", err)
			}
		})
	}
}

// TestRelayDrainPooled: connections a gateway keeps warm, which have sent
// nothing, do not hold a stopping relay for its handshake timeout.
func TestRelayDrainPooled(t *testing.T) {
	dst := startDestination(t)
	r, stop := serveRelay(t, ServerConfig{DrainTimeout: 20 * time.Second})
	g := startGateway(t, r, GatewayConfig{WarmPool: 2, WarmAge: time.Minute})
	echoOnce(t, g, dst)
	waitFor(t, "pool filled", func() bool { return g.Stats().Pool.Idle == 2 })
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > shutdownHeaderWait+time.Second {
		t.Errorf("stopped after %v, waiting for pooled connections", took)
	}
	if st := r.Stats(); st.Unused != 2 || len(st.Refused) != 0 {
		t.Errorf("relay %+v, want the two pooled connections unused, no refusal", st)
	}
}
