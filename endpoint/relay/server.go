package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/mptcpd-go/mptcpd/endpoint/gate"
	"github.com/mptcpd-go/mptcpd/nl/mptcpsock"
	"golang.org/x/sys/unix"
)

// Defaults of a relay's zero settings.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultDialTimeout      = 10 * time.Second
	DefaultIdleTimeout      = 2 * time.Hour // Linux's first TCP keepalive probe
	// fastOpenQueue is the listener's TCP Fast Open queue: connections
	// whose SYN data is accepted before the handshake ends.
	fastOpenQueue = 256
)

// ServerConfig is the relay role: the MPTCP listener that gateways
// connect to, and what it may do for them.
type ServerConfig struct {
	Listen []string
	Keys   []Key // every key a gateway may use; at least one
	Limits gate.Limits
	Policy *DestPolicy // nil: the defaults of a zero DestPolicy

	HandshakeTimeout time.Duration // for the header to arrive
	DialTimeout      time.Duration // for the destination to answer
	IdleTimeout      time.Duration // no byte either way; negative: none
	DrainTimeout     time.Duration // at shutdown; 0: DefaultDrainTimeout; negative: none
	ReplayWindow     time.Duration
	ReplayMax        int

	Logger   *slog.Logger  // nil: discard
	Resolver *net.Resolver // for host names; nil: net.DefaultResolver
}

func (c ServerConfig) withDefaults() ServerConfig {
	if c.Policy == nil {
		c.Policy = &DestPolicy{}
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.ReplayWindow == 0 {
		c.ReplayWindow = DefaultReplayWindow
	}
	if c.ReplayMax == 0 {
		c.ReplayMax = DefaultReplayMax
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
	return c
}

// Stats are a relay's or a gateway's counters since it started.
type Stats struct {
	Active  int // connections being relayed
	Relayed int // connections relayed in all (dialed)
	// Refused counts the connections reset before anything was dialed,
	// by reason (a header field, "policy", "dial", "relay").
	Refused    map[string]int
	Up, Down   int64 // bytes, client to destination and back, of ended connections
	Resets     int   // relayed connections that ended with a reset
	IdleResets int   // of them, by the idle timeout
	// Unused counts connections closed before their first byte: a
	// gateway's warm pool letting one go (relay).
	Unused int
	Pool   PoolStats // the warm pool (gateway)
}

// Server is a running relay.
type Server struct {
	cfg    ServerConfig
	log    *slog.Logger
	gate   *gate.Gate
	replay *Replay
	drain  *drainer
	stats  counters
}

// counters are Stats behind a lock, shared by both roles.
type counters struct {
	mu sync.Mutex
	s  Stats
}

func (c *counters) refuse(why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.s.Refused == nil {
		c.s.Refused = map[string]int{}
	}
	c.s.Refused[why]++
}

func (c *counters) unused() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.s.Unused++
}

func (c *counters) start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.s.Active++
	c.s.Relayed++
}

func (c *counters) end(m Moved) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.s.Active--
	c.s.Up += m.Up
	c.s.Down += m.Down
	if m.Reset {
		c.s.Resets++
	}
	if m.Idle {
		c.s.IdleResets++
	}
}

// snapshot copies the counters, adding the refusals of gates (nil ones
// skipped) to Refused.
func (c *counters) snapshot(gates ...*gate.Gate) Stats {
	c.mu.Lock()
	s := c.s
	s.Refused = maps.Clone(c.s.Refused)
	c.mu.Unlock()
	if s.Refused == nil {
		s.Refused = map[string]int{}
	}
	for _, g := range gates {
		if g == nil {
			continue
		}
		for k, v := range g.Refused() {
			s.Refused[string(k)] += v
		}
	}
	return s
}

// Listen opens a relay's listeners.
func Listen(ctx context.Context, cfg ServerConfig) (*Server, error) {
	if len(cfg.Keys) == 0 {
		return nil, errors.New("relay: no key: a relay without one would dial for anyone")
	}
	c := cfg.withDefaults()
	g, err := gate.Listen(ctx, gate.Config{Listen: c.Listen, Limits: c.Limits, Logger: c.Logger, Control: fastOpenListener})
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	return &Server{
		cfg:    c,
		log:    c.Logger,
		gate:   g,
		replay: &Replay{Window: c.ReplayWindow, Max: c.ReplayMax},
		drain:  newDrainer(),
	}, nil
}

// fastOpenListener accepts data in SYNs, so that a gateway's header and
// its client's first bytes reach the relay half a round trip after they
// leave. The kernel also needs net.ipv4.tcp_fastopen's server bit (2);
// without it the option is harmless and the first flight simply waits for
// the handshake.
func fastOpenListener(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_FASTOPEN, fastOpenQueue)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("TCP_FASTOPEN: %w", serr)
	}
	return nil
}

// Addrs are the listeners' addresses.
func (s *Server) Addrs() []net.Addr { return s.gate.Addrs() }

// MPTCP reports whether the listeners are MPTCP sockets.
func (s *Server) MPTCP() bool { return s.gate.MPTCP() }

// Stats returns a copy of the counters; Refused includes the gate's.
func (s *Server) Stats() Stats {
	return s.stats.snapshot(s.gate)
}

// Serve relays until ctx ends, then closes its listeners and lets the
// connections being relayed finish for DrainTimeout before it resets the
// rest and returns.
func (s *Server) Serve(ctx context.Context) error {
	if !s.MPTCP() {
		s.log.Warn("MPTCP is not available in this namespace (is net.mptcp.enabled 0?): serving plain TCP, one path per connection")
	}
	for _, a := range s.Addrs() {
		s.log.Info("relay listening", "addr", a.String(), "mptcp", s.MPTCP())
	}
	err := s.gate.Serve(ctx, func(c *net.TCPConn, done func()) {
		s.drain.run(func(connCtx context.Context) {
			defer done()
			s.relay(ctx, connCtx, c)
		})
	})
	s.drain.drain(s.cfg.DrainTimeout, s.log)
	return err
}

// relay authenticates c's header, checks and dials its destination, and
// relays; anything wrong before the dial resets c with nothing dialed.
// serveCtx is Serve's: when it ends, a connection still waiting for its
// first byte (a gateway's warm pool keeps some) is let go, so that
// draining does not wait the handshake timeout for it. ctx ends when
// draining gives up.
func (s *Server) relay(serveCtx, ctx context.Context, c *net.TCPConn) {
	defer s.drain.track(c)()
	src := gate.ClientAddr(c)
	_ = c.SetReadDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	var mu sync.Mutex
	reading := true
	stop := context.AfterFunc(serveCtx, func() {
		mu.Lock()
		defer mu.Unlock()
		if reading {
			_ = c.SetReadDeadline(time.Now().Add(shutdownHeaderWait))
		}
	})
	cr := &countingReader{r: c}
	h, err := ReadHeader(cr, s.cfg.Keys)
	mu.Lock()
	reading = false
	mu.Unlock()
	stop()
	if err == io.EOF || (err != nil && cr.n == 0 && serveCtx.Err() != nil) {
		s.stats.unused()
		c.Close()
		return
	}
	if err == nil {
		err = s.replay.Check(h, time.Now())
	}
	if err != nil {
		s.refuse(c, src, headerField(err), err)
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	addrs, err := s.resolve(ctx, h.Dest)
	if err != nil {
		s.refuse(c, src, "policy", err)
		return
	}
	remote, err := s.dial(ctx, addrs)
	if err != nil {
		s.refuse(c, src, "dial", fmt.Errorf("%s: %w", h.Dest, err))
		return
	}
	s.stats.start()
	mptcp, _ := c.MultipathTCP()
	s.log.Debug("relaying", "gateway", src.String(), "dest", h.Dest.String(), "via", remote.RemoteAddr().String(), "mptcp", mptcp)
	m := pipe(c, remote, s.cfg.IdleTimeout, func() error {
		// The gateway's header came in its SYN (TCP Fast Open): bytes
		// written back before its handshake's last ACK would be held
		// by the kernel for ~30 s. Its own bytes flow meanwhile.
		return mptcpsock.WaitEstablished(c, s.cfg.HandshakeTimeout)
	})
	s.stats.end(m)
	s.log.Debug("relayed", "gateway", src.String(), "dest", h.Dest.String(), "up", m.Up, "down", m.Down, "reset", m.Reset, "idle", m.Idle)
}

// shutdownHeaderWait is how long a stopping relay still waits for the
// header of a connection that has sent no byte: one that was being sent
// as the relay stopped arrives within a round trip or so.
const shutdownHeaderWait = time.Second

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (r *countingReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	r.n += n
	return n, err
}

func (s *Server) refuse(c *net.TCPConn, src netip.AddrPort, why string, err error) {
	gate.Reset(c)
	s.stats.refuse(why)
	// A flood of bad headers is the gate's business (its limits); each
	// refusal is still worth a line for the admin chasing a key or clock.
	s.log.Warn("refused", "gateway", src.String(), "reason", why, "err", err)
}

// headerField is the refusal reason of a header error: its field.
func headerField(err error) string {
	var he *HeaderError
	if errors.As(err, &he) {
		return "header-" + he.Field
	}
	return "header"
}

// resolve turns d into the addresses the policy allows, in order.
func (s *Server) resolve(ctx context.Context, d Destination) ([]netip.AddrPort, error) {
	if d.Host == "" {
		if err := s.cfg.Policy.Check(d.Addr.Addr()); err != nil {
			return nil, err
		}
		return []netip.AddrPort{d.Addr}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	ips, err := s.cfg.Resolver.LookupNetIP(ctx, "ip", d.Host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", d.Host, err)
	}
	var ok []netip.AddrPort
	var errs []error
	for _, ip := range ips {
		// Each address is checked: a name must not lead where an
		// address may not (DNS rebinding to 127.0.0.1).
		if err := s.cfg.Policy.Check(ip); err != nil {
			errs = append(errs, err)
			continue
		}
		ok = append(ok, netip.AddrPortFrom(ip.Unmap(), d.Port))
	}
	if len(ok) == 0 {
		return nil, fmt.Errorf("%s: %w", d.Host, errors.Join(errs...))
	}
	return ok, nil
}

// dial tries addrs in order within the dial timeout.
func (s *Server) dial(ctx context.Context, addrs []netip.AddrPort) (*net.TCPConn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	var errs []error
	for _, a := range addrs {
		c, err := d.DialContext(ctx, "tcp", a.String())
		if err == nil {
			return c.(*net.TCPConn), nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}
