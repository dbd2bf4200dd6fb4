package gate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Limits bound what a Gate admits. Zero fields are no limit only through
// a caller's defaults: a Gate takes them as they are.
type Limits struct {
	MaxConnections int     // connections at once
	MaxPerSource   int     // connections at once from one IPv4 address or IPv6 /64
	Rate           float64 // new connections per second, on average
	Burst          int     // new connections at once after a quiet spell
}

// Validate reports limits that cannot work.
func (l Limits) Validate() error {
	var errs []error
	if l.MaxConnections < 0 || l.MaxPerSource < 0 || l.Burst < 0 || l.Rate < 0 {
		errs = append(errs, errors.New("limits must not be negative"))
	}
	if l.MaxPerSource > l.MaxConnections {
		errs = append(errs, fmt.Errorf("max-per-source %d is above max-connections %d", l.MaxPerSource, l.MaxConnections))
	}
	return errors.Join(errs...)
}

// Config is a Gate.
type Config struct {
	Listen []string // host:port addresses
	// TCP makes plain TCP listeners; the default is MPTCP (which accepts
	// plain TCP clients too).
	TCP    bool
	Limits Limits
	// Control, when set, runs on each listening socket before bind (a
	// socket option such as TCP_FASTOPEN).
	Control func(network, address string, c syscall.RawConn) error
	Logger  *slog.Logger // nil: discard
}

// Gate is a set of listeners and the admission behind them.
type Gate struct {
	log       *slog.Logger
	listeners []*net.TCPListener
	mptcp     bool

	mu      sync.Mutex
	adm     *admission
	refused map[Refusal]int
	pending map[Refusal]int // refusals not yet logged
	now     func() time.Time
}

// Listen opens cfg's listeners.
func Listen(ctx context.Context, cfg Config) (*Gate, error) {
	if err := cfg.Limits.Validate(); err != nil {
		return nil, err
	}
	l := cfg.Limits
	g := &Gate{
		log:     cfg.Logger,
		adm:     newAdmission(l.MaxConnections, l.MaxPerSource, l.Rate, l.Burst),
		refused: map[Refusal]int{},
		pending: map[Refusal]int{},
		now:     time.Now,
		mptcp:   !cfg.TCP,
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	lc := net.ListenConfig{Control: cfg.Control}
	lc.SetMultipathTCP(!cfg.TCP)
	for _, addr := range cfg.Listen {
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("listen %s: %w", addr, err)
		}
		tl := ln.(*net.TCPListener)
		g.listeners = append(g.listeners, tl)
		if ok, err := IsMPTCP(tl); err != nil || !ok {
			// Go falls back to TCP when the kernel refuses an MPTCP
			// socket (net.mptcp.enabled=0, or no MPTCP at all).
			g.mptcp = false
		}
	}
	return g, nil
}

// IsMPTCP reports whether a socket is an MPTCP one.
func IsMPTCP(s syscall.Conn) (bool, error) {
	rc, err := s.SyscallConn()
	if err != nil {
		return false, err
	}
	var proto int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		proto, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL)
	}); err != nil {
		return false, err
	}
	return proto == unix.IPPROTO_MPTCP, serr
}

// Addrs are the listeners' addresses (with the ports the kernel chose for
// port 0).
func (g *Gate) Addrs() []net.Addr {
	addrs := make([]net.Addr, len(g.listeners))
	for i, l := range g.listeners {
		addrs[i] = l.Addr()
	}
	return addrs
}

// MPTCP reports whether the listeners are MPTCP sockets; false means
// plain TCP, asked for or because the kernel refused MPTCP.
func (g *Gate) MPTCP() bool { return g.mptcp }

// Refused counts the connections refused so far, by reason.
func (g *Gate) Refused() map[Refusal]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return maps.Clone(g.refused)
}

// Close closes the listeners; Serve returns.
func (g *Gate) Close() {
	for _, l := range g.listeners {
		_ = l.Close()
	}
}

// Serve accepts until ctx ends or a listener fails, then closes the
// listeners and returns. Each admitted connection goes to handle, in the
// accepting goroutine (so handle must not block: it starts its own), with
// done, which frees the connection's place in the limits and must be
// called once, when the connection is over. Connections handed out keep
// running after Serve returns.
func (g *Gate) Serve(ctx context.Context, handle func(c *net.TCPConn, done func())) error {
	errc := make(chan error, len(g.listeners))
	var wg sync.WaitGroup
	for _, l := range g.listeners {
		wg.Go(func() { errc <- g.acceptLoop(ctx, l, handle) })
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var err error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err = <-errc:
			break loop
		case <-tick.C:
			g.logRefusals()
		}
	}
	g.Close()
	wg.Wait()
	g.logRefusals()
	return err
}

func (g *Gate) acceptLoop(ctx context.Context, l *net.TCPListener, handle func(*net.TCPConn, func())) error {
	backoff := 5 * time.Millisecond
	for {
		c, err := l.AcceptTCP()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of descriptors or memory: wait and try again, as
			// net/http does, rather than spin or stop serving.
			var errno syscall.Errno
			if errors.As(err, &errno) && (errno == syscall.EMFILE || errno == syscall.ENFILE || errno == syscall.ENOBUFS || errno == syscall.ENOMEM) {
				g.log.Warn("accept", "addr", l.Addr().String(), "err", err, "retry_in", backoff)
				time.Sleep(backoff)
				backoff = min(2*backoff, time.Second)
				continue
			}
			if errors.Is(err, syscall.ECONNABORTED) {
				continue
			}
			return fmt.Errorf("accept on %s: %w", l.Addr(), err)
		}
		backoff = 5 * time.Millisecond
		src := ClientAddr(c).Addr()
		if g.admit(src) {
			handle(c, sync.OnceFunc(func() { g.done(src) }))
		} else {
			Reset(c)
		}
	}
}

func (g *Gate) admit(src netip.Addr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	verdict := g.adm.admit(src, g.now())
	if verdict != Admitted {
		g.refused[verdict]++
		g.pending[verdict]++
	}
	return verdict == Admitted
}

func (g *Gate) done(src netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.adm.done(src)
}

// logRefusals writes one line for the connections refused since the last
// one.
func (g *Gate) logRefusals() {
	g.mu.Lock()
	if len(g.pending) == 0 {
		g.mu.Unlock()
		return
	}
	attrs := []any{}
	total := 0
	for _, r := range []Refusal{RefusedRate, RefusedTotal, RefusedPerSource} {
		if n := g.pending[r]; n > 0 {
			attrs = append(attrs, string(r), n)
			total += n
		}
	}
	clear(g.pending)
	g.mu.Unlock()
	g.log.Warn("connections refused over the limits", append([]any{"count", total}, attrs...)...)
}

// ClientAddr is c's peer as a server logs it: an IPv4 client of a
// dual-stack listener without its ::ffff: prefix.
func ClientAddr(c *net.TCPConn) netip.AddrPort {
	a := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// Reset closes c with a reset rather than a FIN: what a peer that is
// refused, or whose other side failed, should see.
func Reset(c *net.TCPConn) {
	_ = c.SetLinger(0)
	_ = c.Close()
}
