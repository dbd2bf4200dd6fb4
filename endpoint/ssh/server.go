package ssh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mptcpd-go/mptcpd/endpoint/gate"
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

func (c *Config) limits() gate.Limits {
	return gate.Limits{MaxConnections: c.MaxConnections, MaxPerSource: c.MaxPerSource, Rate: c.Rate, Burst: c.Burst}
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
	if err := d.limits().Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Stats are a Server's counters since it started.
type Stats struct {
	Active   int // sessions running now
	Sessions int // handed to sshd in all
	MPTCP    int // of them, over MPTCP rather than plain TCP
	Refused  map[gate.Refusal]int
	Failed   int // sshd could not be started
}

// Server is a running SSH endpoint.
type Server struct {
	cfg  Config
	log  *slog.Logger
	gate *gate.Gate
	env  []string

	mu    sync.Mutex
	stats Stats
	now   func() time.Time
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
	g, err := gate.Listen(ctx, gate.Config{Listen: c.Listen, Limits: c.limits(), Logger: c.Logger})
	if err != nil {
		return nil, err
	}
	return &Server{
		cfg:  c,
		log:  c.Logger,
		gate: g,
		env:  sessionEnv(os.Environ()),
		now:  time.Now,
	}, nil
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
func (s *Server) Addrs() []net.Addr { return s.gate.Addrs() }

// MPTCP reports whether the listeners are MPTCP sockets; false means
// the kernel refused MPTCP and they serve plain TCP only.
func (s *Server) MPTCP() bool { return s.gate.MPTCP() }

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	st := s.stats
	s.mu.Unlock()
	st.Refused = s.gate.Refused()
	return st
}

// Serve accepts connections until ctx ends, then closes the listeners and
// returns; sessions keep running.
func (s *Server) Serve(ctx context.Context) error {
	if !s.MPTCP() {
		s.log.Warn("MPTCP is not available in this namespace (is net.mptcp.enabled 0?): serving plain TCP")
	}
	for _, a := range s.Addrs() {
		s.log.Info("listening", "addr", a.String(), "mptcp", s.MPTCP(), "sshd", s.cfg.SSHD)
	}
	return s.gate.Serve(ctx, s.handle)
}

// handle hands an admitted connection to sshd; done frees its place in
// the limits when the session ends.
func (s *Server) handle(c *net.TCPConn, done func()) {
	src := gate.ClientAddr(c)
	mptcp, _ := c.MultipathTCP()
	// Counted before sshd starts: sshd can greet the client before
	// spawn returns, and a client that then reads Stats must see it.
	s.mu.Lock()
	s.stats.Active++
	s.stats.Sessions++
	if mptcp {
		s.stats.MPTCP++
	}
	s.mu.Unlock()
	pid, err := s.spawn(c, done)
	if err != nil {
		s.mu.Lock()
		s.stats.Active--
		s.stats.Sessions--
		if mptcp {
			s.stats.MPTCP--
		}
		s.stats.Failed++
		s.mu.Unlock()
		done()
		s.log.Error("cannot start sshd", "client", src.String(), "err", err)
		return
	}
	s.log.Info("session", "client", src.String(), "mptcp", mptcp, "pid", pid)
}

// spawn starts `sshd -i` on c's socket and waits for it in the background.
func (s *Server) spawn(c *net.TCPConn, done func()) (int, error) {
	src := gate.ClientAddr(c)
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
		s.mu.Unlock()
		done()
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
