package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/mptcpd-go/mptcpd/endpoint/gate"
	"github.com/mptcpd-go/mptcpd/endpoint/relay/socks5"
	"github.com/mptcpd-go/mptcpd/nl/intercept"
	"golang.org/x/sys/unix"
)

// DefaultFirstDataWait is how long a gateway waits for an intercepted
// client's first bytes before it sends the header alone. A client that
// speaks first (HTTP, TLS) sends them right behind its handshake's last
// ACK, within a LAN round trip; sent with the header they ride in the SYN
// to the relay and save a whole round trip over the ISPs. A client that
// waits for the server to speak (SSH, SMTP) loses this much, once.
const DefaultFirstDataWait = 2 * time.Millisecond

// firstFlight bounds what is read before dialing: what fits a SYN with
// Fast Open, and a bit; the rest follows as the connection allows.
const firstFlight = 4 << 10

// GatewayConfig is the gateway role: where intercepted and SOCKS5 clients
// come in, and the relay their connections go to.
type GatewayConfig struct {
	Relay string // the relay's host:port
	Key   Key

	// Transparent are the listeners that intercepted (redirected)
	// connections arrive on; Intercept, when set, installs the nftables
	// rules that redirect them (its Port is the first listener's).
	Transparent []string
	Intercept   *intercept.Config
	// SOCKS are SOCKS5 listeners for clients configured to use one;
	// SOCKSUsers, when set, requires a user name and password.
	SOCKS      []string
	SOCKSUsers map[string]string

	Limits        gate.Limits
	FirstDataWait time.Duration // 0: DefaultFirstDataWait; negative: none
	// FastOpen dials the relay with TCP Fast Open: the header and the
	// first bytes go in the SYN. Off by default: on Linux 6.18 an MPTCP
	// connection opened so crawls at a few Mbit/s once a second subflow
	// joins (nl/README.md).
	FastOpen    bool
	DialTimeout time.Duration // 0: DefaultDialTimeout
	IdleTimeout time.Duration // 0: DefaultIdleTimeout; negative: none
	// DrainTimeout: at shutdown; 0: DefaultDrainTimeout; negative: none
	DrainTimeout time.Duration
	// WarmPool keeps this many connections to the relay established
	// ahead of need while clients come (see warmPool); 0: none. WarmAge
	// is a pooled connection's life (0: DefaultWarmAge); it must be
	// shorter than the relay's handshake timeout. WarmKeep is how long
	// the pool stays filled after its last use (0: DefaultWarmKeep).
	WarmPool int
	WarmAge  time.Duration
	WarmKeep time.Duration

	Logger *slog.Logger // nil: discard
}

// Gateway is a running gateway.
type Gateway struct {
	cfg         GatewayConfig
	log         *slog.Logger
	transparent *gate.Gate
	socks       *gate.Gate
	rules       *intercept.Rules
	pool        *warmPool // nil: none
	drain       *drainer
	stats       counters
}

// ListenGateway opens the gateway's listeners and installs its
// interception rules.
func ListenGateway(ctx context.Context, cfg GatewayConfig) (*Gateway, error) {
	if _, _, err := net.SplitHostPort(cfg.Relay); err != nil {
		return nil, fmt.Errorf("relay %q: want host:port", cfg.Relay)
	}
	if len(cfg.Transparent) == 0 && len(cfg.SOCKS) == 0 {
		return nil, errors.New("gateway: neither a transparent nor a SOCKS listener")
	}
	if cfg.Intercept != nil && len(cfg.Transparent) == 0 {
		return nil, errors.New("gateway: interception without a transparent listener to redirect to")
	}
	if cfg.FirstDataWait == 0 {
		cfg.FirstDataWait = DefaultFirstDataWait
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.WarmPool < 0 {
		return nil, fmt.Errorf("gateway: warm pool of %d connections", cfg.WarmPool)
	}
	g := &Gateway{cfg: cfg, log: cfg.Logger, drain: newDrainer()}
	if cfg.WarmPool > 0 {
		// Pooled connections are dialed without Fast Open: they must be
		// established before a client needs them.
		g.pool = newWarmPool(cfg.WarmPool, cfg.WarmAge, cfg.WarmKeep, func(ctx context.Context) (*net.TCPConn, error) {
			return g.dialRelay(ctx, false)
		}, cfg.Logger)
	}
	var err error
	open := func(addrs []string) (*gate.Gate, error) {
		if len(addrs) == 0 {
			return nil, nil
		}
		// The LAN side is plain TCP: its clients know nothing of MPTCP.
		return gate.Listen(ctx, gate.Config{Listen: addrs, TCP: true, Limits: cfg.Limits, Logger: cfg.Logger})
	}
	if g.transparent, err = open(cfg.Transparent); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	if g.socks, err = open(cfg.SOCKS); err != nil {
		g.close()
		return nil, fmt.Errorf("gateway: %w", err)
	}
	if cfg.Intercept != nil {
		ic := *cfg.Intercept
		ic.Port = uint16(g.transparent.Addrs()[0].(*net.TCPAddr).Port)
		if g.rules, err = intercept.Install(ic); err != nil {
			g.close()
			return nil, fmt.Errorf("gateway: %w", err)
		}
	}
	return g, nil
}

func (g *Gateway) close() {
	for _, gt := range []*gate.Gate{g.transparent, g.socks} {
		if gt != nil {
			gt.Close()
		}
	}
}

// TransparentAddrs and SOCKSAddrs are the listeners' addresses.
func (g *Gateway) TransparentAddrs() []net.Addr { return addrsOf(g.transparent) }
func (g *Gateway) SOCKSAddrs() []net.Addr       { return addrsOf(g.socks) }

func addrsOf(gt *gate.Gate) []net.Addr {
	if gt == nil {
		return nil
	}
	return gt.Addrs()
}

// Stats returns a copy of the counters; Refused includes the gates'.
func (g *Gateway) Stats() Stats {
	s := g.stats.snapshot(g.transparent, g.socks)
	if g.pool != nil {
		s.Pool = g.pool.snapshot()
	}
	return s
}

// Serve relays until ctx ends, then removes the interception rules (so
// that the LAN's connections are not redirected to a closed port), lets
// the connections being relayed finish for DrainTimeout, resets the rest
// and returns.
func (g *Gateway) Serve(ctx context.Context) error {
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	serve := func(gt *gate.Gate, handle func(context.Context, *net.TCPConn) (Destination, error)) {
		if gt == nil {
			return
		}
		for _, a := range gt.Addrs() {
			g.log.Info("gateway listening", "addr", a.String(), "relay", g.cfg.Relay)
		}
		wg.Go(func() {
			errc <- gt.Serve(ctx, func(c *net.TCPConn, done func()) {
				g.drain.run(func(ctx context.Context) {
					defer done()
					g.relay(ctx, c, handle)
				})
			})
		})
	}
	serve(g.transparent, g.originalDst)
	serve(g.socks, g.socksRequest)
	if g.pool != nil {
		wg.Go(func() { g.pool.run(ctx) })
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	g.close()
	wg.Wait()
	if g.rules != nil {
		err = errors.Join(err, g.rules.Remove())
	}
	g.drain.drain(g.cfg.DrainTimeout, g.log)
	return err
}

// originalDst is where an intercepted connection was going.
func (g *Gateway) originalDst(_ context.Context, c *net.TCPConn) (Destination, error) {
	dst, err := intercept.OriginalDst(c)
	if err != nil {
		return Destination{}, err
	}
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	// A client that connects to the redirect port itself would have the
	// gateway relay to itself.
	if local := c.LocalAddr().(*net.TCPAddr).AddrPort(); netip.AddrPortFrom(local.Addr().Unmap(), local.Port()) == dst {
		return Destination{}, fmt.Errorf("connection to the redirect port %s itself, not redirected", dst)
	}
	return Destination{Addr: dst, Port: dst.Port()}, nil
}

// socksRequest runs the SOCKS5 handshake and answers success at once:
// the relay's answer would cost a round trip over the ISPs, and a failure
// still reaches the client, as a reset, the way a failed connection
// through an intercepting gateway does.
func (g *Gateway) socksRequest(_ context.Context, c *net.TCPConn) (Destination, error) {
	_ = c.SetDeadline(time.Now().Add(DefaultHandshakeTimeout))
	defer c.SetDeadline(time.Time{})
	d, err := socks5.Handshake(c, socks5.Config{Users: g.cfg.SOCKSUsers})
	if err != nil {
		return Destination{}, err
	}
	if a, err := netip.ParseAddr(d.Host); err == nil {
		// An address sent as a name ("::1", as curl may) is checked and
		// dialed as the address it is.
		d = Destination{Addr: netip.AddrPortFrom(a.Unmap(), d.Port), Port: d.Port}
	}
	bound := c.LocalAddr().(*net.TCPAddr).AddrPort()
	if err := socks5.Reply(c, socks5.Succeeded, bound); err != nil {
		return Destination{}, err
	}
	return d, nil
}

// relay takes a client connection to the relay: the destination and the
// client's first bytes go in the first flight, then both ways are copied.
func (g *Gateway) relay(ctx context.Context, c *net.TCPConn, destination func(context.Context, *net.TCPConn) (Destination, error)) {
	defer g.drain.track(c)()
	src := gate.ClientAddr(c)
	dest, err := destination(ctx, c)
	if err != nil {
		g.refuse(c, src, "request", err)
		return
	}
	first := make([]byte, 0, MaxHeaderLen+firstFlight)
	first, err = AppendHeader(first, NewHeader(dest, time.Now()), &g.cfg.Key)
	if err != nil {
		g.refuse(c, src, "request", err)
		return
	}
	if first, err = g.firstBytes(c, first); err != nil {
		g.refuse(c, src, "client", err)
		return
	}
	r, err := g.sendFirst(ctx, first)
	if err != nil {
		g.refuse(c, src, "relay", err)
		return
	}
	g.stats.start()
	g.log.Debug("relaying", "client", src.String(), "dest", dest.String(), "first", len(first))
	m := pipe(c, r, g.cfg.IdleTimeout, nil)
	m.Up += int64(len(first))
	g.stats.end(m)
	g.log.Debug("relayed", "client", src.String(), "dest", dest.String(), "up", m.Up, "down", m.Down, "reset", m.Reset)
}

// sendFirst writes first to the relay on a pooled connection when there
// is one, else on a new one; also on a new one when the relay closed the
// pooled one after take looked (its write fails), since first is intact.
func (g *Gateway) sendFirst(ctx context.Context, first []byte) (*net.TCPConn, error) {
	if g.pool != nil {
		if r := g.pool.take(time.Now()); r != nil {
			if _, err := r.Write(first); err == nil {
				return r, nil
			}
			gate.Reset(r)
		}
	}
	r, err := g.dialRelay(ctx, g.cfg.FastOpen)
	if err != nil {
		return nil, err
	}
	if _, err := r.Write(first); err != nil {
		gate.Reset(r)
		return nil, err
	}
	return r, nil
}

// firstBytes appends what the client has sent already, waiting at most
// FirstDataWait for a first byte. An end of stream is left for pipe to
// see again; a reset is an error, since a socket reports it only once.
func (g *Gateway) firstBytes(c *net.TCPConn, b []byte) ([]byte, error) {
	if g.cfg.FirstDataWait < 0 {
		return b, nil
	}
	_ = c.SetReadDeadline(time.Now().Add(g.cfg.FirstDataWait))
	n, err := c.Read(b[len(b):cap(b)])
	_ = c.SetReadDeadline(time.Time{})
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b[:len(b)+n], nil
}

// dialRelay opens an MPTCP connection to the relay. With TCP Fast Open,
// connect returns at once and the first write goes in the SYN (when the
// kernel has the relay's cookie, from an earlier connection; else in the
// first segment after the handshake).
func (g *Gateway) dialRelay(ctx context.Context, fastOpen bool) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: g.cfg.DialTimeout}
	d.SetMultipathTCP(true)
	if fastOpen {
		d.Control = fastOpenConnect
	}
	c, err := d.DialContext(ctx, "tcp", g.cfg.Relay)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

func fastOpenConnect(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_FASTOPEN_CONNECT, 1)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("TCP_FASTOPEN_CONNECT: %w", serr)
	}
	return nil
}

func (g *Gateway) refuse(c *net.TCPConn, src netip.AddrPort, why string, err error) {
	gate.Reset(c)
	g.stats.refuse(why)
	g.log.Warn("not relayed", "client", src.String(), "reason", why, "err", err)
}
