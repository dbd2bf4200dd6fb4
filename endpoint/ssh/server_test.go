package ssh

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/endpoint/gate"
)

// fakeSSHD writes a script that stands in for sshd -i: it greets with
// the peer address sshd would see (from the socket on its stdin, through
// /proc) and its arguments, then echoes lines until the client closes.
func fakeSSHD(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sshd")
	script := `#!/bin/sh
echo "args: $*"
echo "stdin: $(readlink /proc/self/fd/0)"
exec cat
`
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func startServer(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	if cfg.SSHD == "" {
		cfg.SSHD = fakeSSHD(t)
	}
	cfg.Listen = []string{"127.0.0.1:0"}
	cfg.SkipCheck = true
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Listen(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return s, s.Addrs()[0].String()
}

// session dials the server and reads the fake sshd's greeting.
func session(t *testing.T, addr string) (net.Conn, *bufio.Reader, []string) {
	t.Helper()
	var d net.Dialer
	d.SetMultipathTCP(true)
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	var greeting []string
	for range 2 {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("greeting: %v (after %q)", err, greeting)
		}
		greeting = append(greeting, strings.TrimSpace(line))
	}
	return c, r, greeting
}

func waitStats(t *testing.T, s *Server, what string, ok func(Stats) bool) Stats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := s.Stats()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: stats %+v", what, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestServerHandsSocketToSSHD(t *testing.T) {
	s, addr := startServer(t, Config{SSHDArgs: []string{"-f", "/etc/x", "-oLogLevel=DEBUG"}})
	c, r, greeting := session(t, addr)
	if want := "args: -i -f /etc/x -oLogLevel=DEBUG"; greeting[0] != want {
		t.Errorf("sshd arguments: %q, want %q", greeting[0], want)
	}
	// sshd's stdin is the accepted socket itself, not a pipe: that is
	// what lets it see the client's address.
	if !strings.HasPrefix(greeting[1], "stdin: socket:") {
		t.Errorf("sshd's stdin is %q, want the socket", greeting[1])
	}
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("echo: %q, %v", line, err)
	}
	st := s.Stats()
	if st.Sessions != 1 || st.Active != 1 {
		t.Errorf("stats %+v, want one active session", st)
	}
	if s.MPTCP() && st.MPTCP != 1 {
		t.Errorf("MPTCP listener, MPTCP client, but the session counted as TCP: %+v", st)
	}
	c.Close()
	waitStats(t, s, "session end", func(st Stats) bool { return st.Active == 0 })
}

func TestServerPlainTCPClient(t *testing.T) {
	s, addr := startServer(t, Config{})
	c, err := net.Dial("tcp", addr) // no MPTCP
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.HasPrefix(line, "args: -i") {
		t.Fatalf("plain TCP client: %q, %v", line, err)
	}
	if st := s.Stats(); st.Sessions != 1 || st.MPTCP != 0 {
		t.Errorf("stats %+v, want one TCP session", st)
	}
}

// refused reports whether the server reset c without a session: the
// first read fails (a reset, or an end of file) instead of a greeting.
func refused(t *testing.T, addr string) bool {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return true
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = bufio.NewReader(c).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read: %v", err)
	}
	return err != nil
}

func TestServerLimits(t *testing.T) {
	s, addr := startServer(t, Config{MaxConnections: 3, MaxPerSource: 2, Rate: 1000, Burst: 1000})
	c1, _, _ := session(t, addr)
	session(t, addr)
	// The third from 127.0.0.1 is over max-per-source.
	if !refused(t, addr) {
		t.Fatal("third connection from one address admitted, max-per-source 2")
	}
	st := s.Stats()
	if st.Refused[gate.RefusedPerSource] != 1 || st.Active != 2 {
		t.Errorf("stats %+v", st)
	}
	// A session that ends frees its place.
	c1.Close()
	waitStats(t, s, "first session end", func(st Stats) bool { return st.Active == 1 })
	session(t, addr)
}

func TestServerRate(t *testing.T) {
	s, addr := startServer(t, Config{MaxConnections: 100, MaxPerSource: 100, Rate: 0.01, Burst: 2})
	session(t, addr)
	session(t, addr)
	for range 5 {
		if !refused(t, addr) {
			t.Fatal("connection admitted past the burst at 0.01/s")
		}
	}
	if st := s.Stats(); st.Refused[gate.RefusedRate] != 5 || st.Sessions != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestServerSSHDMissing(t *testing.T) {
	s, addr := startServer(t, Config{SSHD: "/nonexistent/sshd"})
	if !refused(t, addr) {
		t.Fatal("a session without sshd")
	}
	st := waitStats(t, s, "failure", func(st Stats) bool { return st.Failed == 1 })
	if st.Active != 0 {
		t.Errorf("a failed start still counts as active: %+v", st)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string // substring of the error, "" for none
	}{
		{Config{}, ""},
		{Config{Listen: []string{"[::]:22", "10.0.0.1:2222"}, SSHD: "/usr/sbin/sshd"}, ""},
		{Config{Listen: []string{"22"}}, `listen "22": want host:port`},
		{Config{SSHD: "sshd"}, `sshd "sshd": not an absolute path`},
		{Config{MaxConnections: 5, MaxPerSource: 6}, "max-per-source 6 is above max-connections 5"},
		{Config{Rate: -1}, "must not be negative"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%+v: %v", tt.cfg, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%+v: error %v, want %q", tt.cfg, err, tt.want)
		}
	}
}

func TestListenChecksSSHD(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "sshd")
	if err := os.WriteFile(bad, []byte("#!/bin/sh\necho '/etc/ssh/sshd_config line 3: Bad configuration option: Portt' >&2\nexit 255\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Listen(context.Background(), Config{SSHD: bad, Listen: []string{"127.0.0.1:0"}})
	if err == nil || !strings.Contains(err.Error(), "line 3: Bad configuration option: Portt") {
		t.Fatalf("Listen with a broken sshd config: %v", err)
	}
}

func TestSessionEnv(t *testing.T) {
	got := sessionEnv([]string{"PATH=/bin", "NOTIFY_SOCKET=/run/x", "LISTEN_FDS=1", "LISTEN_PID=3", "WATCHDOG_USEC=1", "LANG=C"})
	if want := []string{"PATH=/bin", "LANG=C"}; !slices.Equal(got, want) {
		t.Errorf("sessionEnv: %q, want %q", got, want)
	}
}
