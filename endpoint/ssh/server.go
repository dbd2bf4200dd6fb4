package ssh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults of Config's zero fields.
const (
	DefaultListen         = "[::]:22"
	DefaultSSHD           = "/usr/sbin/sshd"
	DefaultMaxConnections = 64 // systemd's MaxConnections= for ssh.socket
	DefaultMaxPerSource   = 10 // sshd's MaxStartups begins dropping at 10
	DefaultRate           = 10 // new connections per second
	DefaultBurst          = 20
)

// Config is an SSH endpoint. Zero fields take the defaults above.
type Config struct {
	// Listen are host:port addresses; "[::]:22" accepts IPv4 too.
	Listen []string
	// SSHD is sshd's absolute path; SSHDArgs follow its -i, e.g.
	// ["-f", "/etc/ssh/sshd_config", "-oClientAliveInterval=30"].
	SSHD     string
	SSHDArgs []string

	MaxConnections int     // sessions at once
	MaxPerSource   int     // sessions at once from one IPv4 address or IPv6 /64
	Rate           float64 // new connections per second, on average
	Burst          int     // new connections at once after a quiet spell

	// SkipCheck skips `sshd -t` at Listen (tests of the Server alone).
	SkipCheck bool

	Logger *slog.Logger // nil: discard
	// Stderr is sshd's standard error; nil: the Server's own. A file, so
	// that sessions keep it after the Server exits.
	Stderr *os.File
}

func (c *Config) withDefaults() Config {
	d := *c
	if len(d.Listen) == 0 {
		d.Listen = []string{DefaultListen}
	}
	if d.SSHD == "" {
		d.SSHD = DefaultSSHD
	}
	if d.MaxConnections == 0 {
		d.MaxConnections = DefaultMaxConnections
	}
	if d.MaxPerSource == 0 {
		d.MaxPerSource = DefaultMaxPerSource
	}
	if d.Rate == 0 {
		d.Rate = DefaultRate
	}
	if d.Burst == 0 {
		d.Burst = DefaultBurst
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Stderr == nil {
		d.Stderr = os.Stderr
	}
	return d
}

// Validate reports every problem of c at once (after defaults).
func (c *Config) Validate() error {
	d := c.withDefaults()
	var errs []error
	for _, l := range d.Listen {
		if _, _, err := net.SplitHostPort(l); err != nil {
			errs = append(errs, fmt.Errorf("listen %q: want host:port, e.g. [::]:22 or 192.0.2.1:2222", l))
		}
	}
	if !filepath.IsAbs(d.SSHD) {
		errs = append(errs, fmt.Errorf("sshd %q: not an absolute path (sshd refuses to run otherwise)", d.SSHD))
	}
	if d.MaxConnections < 0 || d.MaxPerSource < 0 || d.Burst < 0 || d.Rate < 0 {
		errs = append(errs, errors.New("limits must not be negative"))
	}
	if d.MaxPerSource > d.MaxConnections {
		errs = append(errs, fmt.Errorf("max-per-source %d is above max-connections %d", d.MaxPerSource, d.MaxConnections))
	}
	return errors.Join(errs...)
}

// Stats are a Server's counters since it started.
type Stats struct {
	Active   int // sessions running now
	Sessions int // handed to sshd in all
	MPTCP    int // of them, over MPTCP rather than plain TCP
	Refused  map[Refusal]int
	Failed   int // sshd could not be started
}

// Server is a running SSH endpoint.
type Server struct {
	cfg       Config
	log       *slog.Logger
	listeners []*net.TCPListener
	mptcp     bool
	env       []string

	mu      sync.Mutex
	adm     *admission
	stats   Stats
	pending map[Refusal]int // refusals not yet logged
	now     func() time.Time
	wg      sync.WaitGroup // accept loops
}

// Listen checks cfg and sshd's configuration (`sshd -t` with the same
// arguments), and opens the listeners.
func Listen(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := cfg.withDefaults()
	if !c.SkipCheck {
		if err := checkSSHD(ctx, c.SSHD, c.SSHDArgs); err != nil {
			return nil, err
		}
	}
	s := &Server{
		cfg:     c,
		log:     c.Logger,
		env:     sessionEnv(os.Environ()),
		adm:     newAdmission(c.MaxConnections, c.MaxPerSource, c.Rate, c.Burst),
		stats:   Stats{Refused: map[Refusal]int{}},
		pending: map[Refusal]int{},
		now:     time.Now,
	}
	var lc net.ListenConfig
	lc.SetMultipathTCP(true)
	s.mptcp = true
	for _, addr := range c.Listen {
		l, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			s.closeListeners()
			return nil, fmt.Errorf("listen %s: %w", addr, err)
		}
		tl := l.(*net.TCPListener)
		s.listeners = append(s.listeners, tl)
		if ok, err := isMPTCP(tl); err != nil || !ok {
			// Go falls back to TCP when the kernel refuses an MPTCP
			// socket (net.mptcp.enabled=0, or no MPTCP at all).
			s.mptcp = false
		}
	}
	return s, nil
}

// checkSSHD runs `sshd -t` so that a broken sshd configuration or a
// missing host key stops the endpoint at start, with sshd's own words,
// rather than every session later.
func checkSSHD(ctx context.Context, sshd string, args []string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, sshd, append([]string{"-t"}, args...)...).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("%s -t %s: %s", sshd, strings.Join(args, " "), msg)
	}
	return nil
}

// isMPTCP reports whether the listener's socket is an MPTCP one.
func isMPTCP(l *net.TCPListener) (bool, error) {
	rc, err := l.SyscallConn()
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

// sessionEnv is the Server's environment without what systemd meant for
// the Server alone (its notification socket, its socket activation).
func sessionEnv(env []string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		for _, p := range []string{"NOTIFY_SOCKET=", "LISTEN_", "WATCHDOG_"} {
			if strings.HasPrefix(kv, p) {
				return true
			}
		}
		return false
	})
}

// Addrs are the listeners' addresses (with the ports the kernel chose for
// port 0).
func (s *Server) Addrs() []net.Addr {
	addrs := make([]net.Addr, len(s.listeners))
	for i, l := range s.listeners {
		addrs[i] = l.Addr()
	}
	return addrs
}

// MPTCP reports whether the listeners are MPTCP sockets; false means
// the kernel refused MPTCP and they serve plain TCP only.
func (s *Server) MPTCP() bool { return s.mptcp }

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Refused = make(map[Refusal]int, len(s.stats.Refused))
	for k, v := range s.stats.Refused {
		st.Refused[k] = v
	}
	return st
}

// Serve accepts connections until ctx ends, then closes the listeners and
// returns; sessions keep running.
func (s *Server) Serve(ctx context.Context) error {
	if !s.mptcp {
		s.log.Warn("MPTCP is not available in this namespace (is net.mptcp.enabled 0?): serving plain TCP")
	}
	for _, a := range s.Addrs() {
		s.log.Info("listening", "addr", a.String(), "mptcp", s.mptcp, "sshd", s.cfg.SSHD)
	}
	errc := make(chan error, len(s.listeners))
	for _, l := range s.listeners {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			errc <- s.acceptLoop(ctx, l)
		}()
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
			s.logRefusals()
		}
	}
	s.closeListeners()
	s.wg.Wait()
	s.logRefusals()
	return err
}

func (s *Server) closeListeners() {
	for _, l := range s.listeners {
		_ = l.Close()
	}
}

func (s *Server) acceptLoop(ctx context.Context, l *net.TCPListener) error {
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
				s.log.Warn("accept", "addr", l.Addr().String(), "err", err, "retry_in", backoff)
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
		s.handle(c)
	}
}

// handle admits c and hands it to sshd, or resets it.
func (s *Server) handle(c *net.TCPConn) {
	src := clientAddr(c)
	mptcp, _ := c.MultipathTCP()
	s.mu.Lock()
	verdict := s.adm.admit(src.Addr(), s.now())
	if verdict != Admitted {
		s.stats.Refused[verdict]++
		s.pending[verdict]++
	} else {
		// Counted before sshd starts: sshd can greet the client before
		// spawn returns, and a client that then reads Stats must see it.
		s.stats.Active++
		s.stats.Sessions++
		if mptcp {
			s.stats.MPTCP++
		}
	}
	s.mu.Unlock()
	if verdict != Admitted {
		_ = c.SetLinger(0) // a reset: nothing lingers for a refused peer
		_ = c.Close()
		return
	}
	pid, err := s.spawn(c)
	if err != nil {
		s.mu.Lock()
		s.stats.Active--
		s.stats.Sessions--
		if mptcp {
			s.stats.MPTCP--
		}
		s.stats.Failed++
		s.adm.done(src.Addr())
		s.mu.Unlock()
		s.log.Error("cannot start sshd", "client", src.String(), "err", err)
		return
	}
	s.log.Info("session", "client", src.String(), "mptcp", mptcp, "pid", pid)
}

// clientAddr is c's peer as sshd logs it: an IPv4 client of a dual-stack
// listener without its ::ffff: prefix.
func clientAddr(c *net.TCPConn) netip.AddrPort {
	a := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// spawn starts `sshd -i` on c's socket and waits for it in the background.
func (s *Server) spawn(c *net.TCPConn) (int, error) {
	src := clientAddr(c)
	// File is a blocking duplicate of the socket: what sshd expects on
	// its standard input and output.
	f, err := c.File()
	_ = c.Close()
	if err != nil {
		return 0, err
	}
	defer f.Close()
	cmd := exec.Command(s.cfg.SSHD, append([]string{"-i"}, s.cfg.SSHDArgs...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = f, f, s.cfg.Stderr
	cmd.Env = s.env
	// Its own session: a signal to the Server's process group (Ctrl-C
	// in a terminal) must not end the users' sessions.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	go func() {
		start := s.now()
		err := cmd.Wait()
		s.mu.Lock()
		s.stats.Active--
		s.adm.done(src.Addr())
		s.mu.Unlock()
		s.log.Debug("session ended", "client", src.String(), "pid", cmd.Process.Pid,
			"after", s.now().Sub(start).Round(time.Millisecond), "status", exitStatus(err))
	}()
	return cmd.Process.Pid, nil
}

func exitStatus(err error) string {
	if err == nil {
		return "0"
	}
	return err.Error()
}

// logRefusals writes one line for the connections refused since the last
// one, so that a flood costs a line a second, not a line a connection.
func (s *Server) logRefusals() {
	s.mu.Lock()
	if len(s.pending) == 0 {
		s.mu.Unlock()
		return
	}
	attrs := []any{}
	total := 0
	for _, r := range []Refusal{RefusedRate, RefusedTotal, RefusedPerSource} {
		if n := s.pending[r]; n > 0 {
			attrs = append(attrs, string(r), n)
			total += n
		}
	}
	clear(s.pending)
	s.mu.Unlock()
	s.log.Warn("connections refused over the limits", append([]any{"count", total}, attrs...)...)
}
