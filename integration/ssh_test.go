package integration

// The SSH endpoint (cmd/mptcpd-ssh) with the real OpenSSH server and
// client: sessions over MPTCP through `mptcpctl ssh`, plain TCP clients,
// the TCP fallback, the limits, and a session that lives through a walk.

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/testbed"
	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
)

const sshdPath = "/usr/sbin/sshd"

// requireOpenSSH skips unless the OpenSSH server and client are there
// (.ci/run installs them).
func requireOpenSSH(t *testing.T) {
	t.Helper()
	for _, p := range []string{sshdPath, "/usr/bin/ssh", "/usr/bin/ssh-keygen"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("OpenSSH is not installed: %v", err)
		}
	}
	// sshd refuses to run without its privilege-separation directory,
	// which the ssh service's RuntimeDirectory= makes at boot.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
}

// sshSite is a server namespace running mptcpd-ssh in front of the real
// sshd, and the client's keys for it.
type sshSite struct {
	dir        string // keys, configs, logs
	clientKey  string
	knownHosts string
	addr       netip.Addr // where the client connects
	port       int
	log        string // mptcpd-ssh's and sshd's standard error
	proc       *exec.Cmd
}

// sshSiteConfig varies the endpoint's limits and sshd's login grace.
type sshSiteConfig struct {
	port       int
	extra      []string // mptcpd-ssh flags
	loginGrace int      // seconds
}

func newSSHSite(t *testing.T, server *testbed.Namespace, addr netip.Addr, cfg sshSiteConfig) *sshSite {
	t.Helper()
	requireOpenSSH(t)
	bin := requireBinary(t, mptcpdSSHBin, mptcpdSSHErr)
	dir := t.TempDir()
	s := &sshSite{
		dir:        dir,
		clientKey:  filepath.Join(dir, "id_ed25519"),
		knownHosts: filepath.Join(dir, "known_hosts"),
		addr:       addr,
		port:       cfg.port,
		log:        filepath.Join(dir, "endpoint.log"),
	}
	hostKey := filepath.Join(dir, "host_ed25519_key")
	for _, key := range []string{hostKey, s.clientKey} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", key).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	pub, err := os.ReadFile(s.clientKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "authorized_keys"), string(pub))
	hostPub, err := os.ReadFile(hostKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	host := addr.String()
	if cfg.port != 22 {
		host = "[" + host + "]:" + strconv.Itoa(cfg.port)
	}
	writeFile(t, s.knownHosts, host+" "+string(hostPub))
	writeFile(t, filepath.Join(dir, "sshd_config"), fmt.Sprintf(`HostKey %s
AuthorizedKeysFile %s/authorized_keys
PidFile none
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
LoginGraceTime %d
ClientAliveInterval 30
ClientAliveCountMax 10
LogLevel VERBOSE
`, hostKey, dir, cmp.Or(cfg.loginGrace, 10)))
	logf, err := os.Create(s.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	args := append([]string{"--config", filepath.Join(dir, "absent.conf"), "--log=stderr", "-d",
		"--listen", net.JoinHostPort("::", strconv.Itoa(cfg.port)),
		"--sshd", sshdPath, "--sshd-args", "-f " + filepath.Join(dir, "sshd_config") + " -e"}, cfg.extra...)
	s.proc = server.Command(context.Background(), bin, args...)
	// A file, not a pipe: sshd inherits it and outlives the endpoint.
	s.proc.Stdout, s.proc.Stderr = logf, logf
	if err := s.proc.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = s.proc.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = s.proc.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("mptcpd-ssh and sshd log:\n%s", s.logText())
		}
	})
	if !waitFor(10*time.Second, func() bool { return strings.Contains(s.logText(), "msg=listening") }) {
		t.Fatalf("mptcpd-ssh did not start:\n%s", s.logText())
	}
	return s
}

func (s *sshSite) logText() string {
	b, _ := os.ReadFile(s.log)
	return string(b)
}

// sshArgs are ssh's options for this site, then the remote command.
func (s *sshSite) sshArgs(command ...string) []string {
	return append([]string{"-F", "/dev/null", "-i", s.clientKey, "-p", strconv.Itoa(s.port),
		"-o", "UserKnownHostsFile=" + s.knownHosts, "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
		"-T", "root@" + s.addr.String()}, command...)
}

// run runs ssh in client through `mptcpctl ssh` (mptcp) or plain ssh.
func (s *sshSite) run(t *testing.T, client *testbed.Namespace, viaMptcpctl bool, command ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := client.Command(ctx, "ssh", s.sshArgs(command...)...)
	if viaMptcpctl {
		cmd = client.Command(ctx, requireBinary(t, mptcpctlBin, mptcpctlErr), append([]string{"ssh"}, s.sshArgs(command...)...)...)
	}
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

func sshTestbed(t *testing.T, rate uint64) *testbed.Testbed {
	t.Helper()
	requireOpenSSH(t)
	tb := twoLinks(t, rate)
	// The server accepts joins: the kernel's default (2 subflows) would
	// refuse new ones while dead ones from a lost link still count.
	if err := tb.Server.SetLimits(8, 8); err != nil {
		t.Fatal(err)
	}
	return tb
}

// TestSSHEndpoint: a real ssh session through the endpoint over MPTCP,
// sshd logging the client's own address; a plain TCP client; and an
// MPTCP-less client falling back with one warning.
func TestSSHEndpoint(t *testing.T) {
	tb := sshTestbed(t, 0)
	if err := tb.StaticEndpoints(mptcp.FlagSubflow); err != nil {
		t.Fatal(err)
	}
	site := newSSHSite(t, tb.Server, tb.ServerAddrs()[0], sshSiteConfig{port: 22})
	wlan := tb.Link("wlan0").Addr()

	t.Run("mptcp", func(t *testing.T) {
		// A session that stays open long enough to look at it.
		out, errOut, err := site.run(t, tb.Laptop, true, "echo", "hello;", "sleep", "1")
		if err != nil || strings.TrimSpace(out) != "hello" {
			t.Fatalf("mptcpctl ssh: %v, stdout %q, stderr %q", err, out, errOut)
		}
		if strings.Contains(errOut, "plain TCP") {
			t.Errorf("fallback warning on an MPTCP session: %q", errOut)
		}
		log := site.logText()
		if want := "Accepted publickey for root from " + wlan.String() + " port "; !strings.Contains(log, want) {
			t.Errorf("sshd's log lacks %q: the client's own address", want)
		}
		if !strings.Contains(log, "client="+wlan.String()) || !strings.Contains(log, "mptcp=true") {
			t.Errorf("endpoint log lacks an MPTCP session from %s", wlan)
		}
	})

	t.Run("mptcp with subflows", func(t *testing.T) {
		// The session is MPTCP end to end: mptcpctl connections shows it
		// with a subflow over each link.
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		cmd := tb.Laptop.Command(ctx, requireBinary(t, mptcpctlBin, mptcpctlErr), append([]string{"ssh"}, site.sshArgs("sleep", "5")...)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		conn := waitSSHSubflows(t, tb, site, wlan, tb.Link("wwan0").Addr())
		out, err := tb.Laptop.Command(ctx, requireBinary(t, mptcpctlBin, mptcpctlErr), "connections").CombinedOutput()
		if err != nil {
			t.Fatalf("mptcpctl connections: %v\n%s", err, out)
		}
		for _, want := range []string{conn.Info.Token.String(), wlan.String(), tb.Link("wwan0").Addr().String(), ":22"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("mptcpctl connections lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("plain tcp client", func(t *testing.T) {
		out, errOut, err := site.run(t, tb.Laptop, false, "echo", "tcp")
		if err != nil || strings.TrimSpace(out) != "tcp" {
			t.Fatalf("ssh: %v, stdout %q, stderr %q", err, out, errOut)
		}
		if !strings.Contains(site.logText(), "mptcp=false") {
			t.Error("endpoint log lacks the plain TCP session")
		}
	})

	t.Run("client without mptcp", func(t *testing.T) {
		if err := tb.Laptop.Sysctl("net.mptcp.enabled", "0"); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tb.Laptop.Sysctl("net.mptcp.enabled", "1") }()
		out, errOut, err := site.run(t, tb.Laptop, true, "echo", "fallback")
		if err != nil || strings.TrimSpace(out) != "fallback" {
			t.Fatalf("mptcpctl ssh without MPTCP: %v, stdout %q, stderr %q", err, out, errOut)
		}
		lines := strings.Split(strings.TrimSpace(errOut), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], "MPTCP is not available on this host") || !strings.Contains(lines[0], "plain TCP") {
			t.Errorf("want one warning line about the fallback, got %q", errOut)
		}
	})
}

// waitSSHSubflows waits for the laptop's connection to the site to have
// an established subflow from each of locals, and returns it.
func waitSSHSubflows(t *testing.T, tb *testbed.Testbed, site *sshSite, locals ...netip.Addr) mptcpdiag.Connection {
	t.Helper()
	c, err := mptcpdiag.Dial(&mptcpdiag.Config{NetNS: tb.Laptop.FD()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var found mptcpdiag.Connection
	var seen []string
	ok := waitFor(10*time.Second, func() bool {
		conns, err := c.Connections()
		if err != nil {
			t.Fatal(err)
		}
		seen = seen[:0]
		for _, conn := range conns {
			if conn.Listening() || conn.Remote.Port() != uint16(site.port) {
				continue
			}
			from := map[netip.Addr]bool{}
			for _, sf := range conn.Subflows {
				seen = append(seen, sf.Local.String()+"->"+sf.Remote.String()+" "+sf.State.String())
				if sf.State == mptcpdiag.StateEstablished {
					from[sf.Local.Addr().Unmap()] = true
				}
			}
			all := true
			for _, l := range locals {
				all = all && from[l]
			}
			if all {
				found = conn
				return true
			}
		}
		return false
	})
	if !ok {
		t.Fatalf("no subflows from %v to the ssh server after 10 s; subflows: %v", locals, seen)
	}
	return found
}

// TestSSHEndpointLimits: silent and garbage clients are sshd's to cut
// off (LoginGraceTime, the identification check); the endpoint's limits
// reset connections over them at once and recover when sessions end.
func TestSSHEndpointLimits(t *testing.T) {
	tb := sshTestbed(t, 0)
	site := newSSHSite(t, tb.Server, tb.ServerAddrs()[0], sshSiteConfig{
		port:       2222,
		loginGrace: 2,
		extra:      []string{"--max-connections=4", "--max-per-source=3", "--rate=1000", "--burst=1000"},
	})
	addr := netip.AddrPortFrom(site.addr, uint16(site.port)).String()
	dial := func(ns *testbed.Namespace) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() error {
			var d net.Dialer
			d.SetMultipathTCP(true)
			var err error
			c, err = d.Dial("tcp", addr)
			return err
		})
		return c, err
	}
	// sshd speaks first: a session has started when its banner arrives.
	banner := func(c net.Conn) (string, error) {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		return bufio.NewReader(c).ReadString('\n')
	}

	// Garbage: sshd answers the banner, then drops the client for its
	// bad identification string, at once.
	g, err := dial(tb.Laptop)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if b, err := banner(g); err != nil || !strings.HasPrefix(b, "SSH-2.0-") {
		t.Fatalf("banner: %q, %v", b, err)
	}
	start := time.Now()
	if _, err := io.WriteString(g, "GET / HTTP/1.0\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = g.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, g); err != nil && !isReset(err) {
		t.Fatalf("garbage client: %v after %s", err, time.Since(start))
	}
	t.Logf("garbage client cut off after %s", time.Since(start).Round(time.Millisecond))

	// Silent clients: three are admitted (max-per-source), the fourth
	// from the same address is reset without a banner.
	var silent []net.Conn
	for i := range 3 {
		c, err := dial(tb.Laptop)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := banner(c); err != nil {
			t.Fatalf("silent client %d: no banner: %v", i, err)
		}
		silent = append(silent, c)
	}
	over, err := dial(tb.Laptop)
	if err == nil {
		defer over.Close()
		if b, err := banner(over); err == nil {
			t.Fatalf("connection over max-per-source got a session: %q", b)
		}
	}
	// sshd's LoginGraceTime (2 s) ends the silent ones; then sessions
	// are admitted again.
	start = time.Now()
	for i, c := range silent {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil && !isReset(err) {
			t.Fatalf("silent client %d not cut off: %v", i, err)
		}
	}
	t.Logf("silent clients cut off after %s", time.Since(start).Round(time.Millisecond))
	if !waitFor(5*time.Second, func() bool {
		c, err := dial(tb.Laptop)
		if err != nil {
			return false
		}
		defer c.Close()
		_, err = banner(c)
		return err == nil
	}) {
		t.Fatal("no session admitted after the silent clients were cut off")
	}
	if !strings.Contains(site.logText(), "refused over the limits") {
		t.Errorf("the refusal is not in the endpoint's log")
	}
	if !strings.Contains(site.logText(), "banner exchange") && !strings.Contains(site.logText(), "invalid format") {
		t.Errorf("sshd did not log the garbage client")
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(op.Err.Error(), "connection reset")
}

// echoSession is a long-lived interactive ssh session: a remote `cat`
// echoing a numbered line sent every interval, each echo timed.
type echoSession struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}

	mu     sync.Mutex
	sent   []time.Time
	echoed []time.Duration // by line number; 0 until echoed
	err    error
}

const echoInterval = 20 * time.Millisecond

func startEchoSession(t *testing.T, tb *testbed.Testbed, site *sshSite) *echoSession {
	t.Helper()
	ctl := requireBinary(t, mptcpctlBin, mptcpctlErr)
	cmd := tb.Laptop.Command(context.Background(), ctl, append([]string{"ssh"}, site.sshArgs("cat")...)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &echoSession{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("ssh stderr:\n%s", stderr.String())
		}
	})
	go s.read(stdout)
	go s.write()
	return s
}

func (s *echoSession) write() {
	tick := time.NewTicker(echoInterval)
	defer tick.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-tick.C:
		}
		s.mu.Lock()
		n := len(s.sent)
		s.sent = append(s.sent, time.Now())
		s.echoed = append(s.echoed, 0)
		s.mu.Unlock()
		if _, err := fmt.Fprintf(s.stdin, "%d\n", n); err != nil {
			s.fail(fmt.Errorf("line %d: %w", n, err))
			return
		}
	}
}

func (s *echoSession) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	next := 0
	for sc.Scan() {
		n, err := strconv.Atoi(sc.Text())
		now := time.Now()
		s.mu.Lock()
		switch {
		case err != nil || n != next || n >= len(s.sent):
			s.mu.Unlock()
			s.fail(fmt.Errorf("echo %q, want line %d", sc.Text(), next))
			return
		default:
			s.echoed[n] = now.Sub(s.sent[n])
		}
		s.mu.Unlock()
		next++
	}
	s.fail(fmt.Errorf("session ended after %d echoes: %v", next, sc.Err()))
}

func (s *echoSession) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

func (s *echoSession) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	close(s.done)
	_ = s.stdin.Close()
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}

// worst is the longest echo delay of the lines sent in [from, to), a line
// not echoed yet counting until now, and whether the session still works.
func (s *echoSession) worst(from, to time.Time) (time.Duration, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var worst time.Duration
	lines := 0
	for i, at := range s.sent {
		if at.Before(from) || !at.Before(to) {
			continue
		}
		lines++
		d := s.echoed[i]
		if d == 0 {
			d = time.Since(at)
		}
		worst = max(worst, d)
	}
	return worst, lines, s.err
}

// waitEchoed waits until every line sent so far has come back.
func (s *echoSession) waitEchoed(timeout time.Duration) bool {
	return waitFor(timeout, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		n := len(s.sent)
		return s.err != nil || n > 0 && s.echoed[n-1] != 0 && n > 1 && s.echoed[n-2] != 0
	})
}

// TestSSHWalk: one ssh session, MPTCP through the endpoint, with our
// mptcpd (built-in laptop policy) on the laptop, lives through the walk:
// Wi-Fi lost while 4G carries on and back, 4G lost and back, Wi-Fi
// renumbered, a spell with no link at all that ends on a new address,
// and one where both links go at once while Wi-Fi carries the session.
// Every line must come back, in order; the worst echo delay of each step
// is printed.
func TestSSHWalk(t *testing.T) {
	outage := 10 * time.Second
	if testing.Short() {
		outage = 3 * time.Second
	}
	tb := sshTestbed(t, 20e6)
	site := newSSHSite(t, tb.Server, tb.ServerAddrs()[0], sshSiteConfig{port: 22})
	startLaptopMptcpd(t, tb)
	wlan, wwan := tb.Link("wlan0"), tb.Link("wwan0")
	sess := startEchoSession(t, tb, site)
	waitSSHSubflows(t, tb, site, wlan.Addr(), wwan.Addr())
	// The lines written during the login come back together after it.
	if !sess.waitEchoed(10 * time.Second) {
		t.Fatal("the session does not echo")
	}

	type step struct {
		name   string
		do     func() error
		settle func() // until the step is over (subflows back)
		dark   bool   // no path at the end: echoes wait for the next step
	}
	both := func() { waitSSHSubflows(t, tb, site, wlan.Addr(), wwan.Addr()) }
	pause := func(d time.Duration) func() { return func() { time.Sleep(d) } }
	steps := []step{
		{name: "idle", do: func() error { return nil }, settle: pause(time.Second)},
		{name: "wlan0 carrier lost (4G carries on)", do: func() error { return wlan.CarrierLoss(testbed.AtAP) }, settle: pause(2 * time.Second)},
		{name: "wlan0 back", do: func() error { return wlan.CarrierBack(testbed.AtAP) }, settle: both},
		{name: "wwan0 carrier lost", do: func() error { return wwan.CarrierLoss(testbed.AtAP) }, settle: pause(2 * time.Second)},
		{name: "wwan0 back", do: func() error { return wwan.CarrierBack(testbed.AtAP) }, settle: both},
		{name: "wlan0 renumbered", do: func() error { return wlan.Renumber() }, settle: both},
		{name: "wlan0 carrier lost again", do: func() error { return wlan.CarrierLoss(testbed.AtAP) }, settle: pause(time.Second)},
		{name: "wwan0 lost too: no link for " + outage.String(), do: func() error { return wwan.CarrierLoss(testbed.AtAP) }, settle: pause(outage), dark: true},
		{name: "wlan0 back on a new subnet", do: func() error {
			if err := wlan.Renumber(); err != nil {
				return err
			}
			return wlan.CarrierBack(testbed.AtAP)
		}, settle: func() { waitSSHSubflows(t, tb, site, wlan.Addr()) }},
		{name: "wwan0 back", do: func() error { return wwan.CarrierBack(testbed.AtAP) }, settle: both},
		// The walk's hard case: the session on Wi-Fi, and both links gone
		// in the same moment (pm/outage.go).
		{name: "both lost at once: no link for " + outage.String(), do: func() error {
			return errors.Join(wlan.CarrierLoss(testbed.AtAP), wwan.CarrierLoss(testbed.AtAP))
		}, settle: pause(outage), dark: true},
		{name: "new subnet on wlan0, and wwan0 back", do: func() error {
			return errors.Join(wlan.Renumber(), wlan.CarrierBack(testbed.AtAP), wwan.CarrierBack(testbed.AtAP))
		}, settle: both},
	}
	type row struct {
		name     string
		from, to time.Time
	}
	var report strings.Builder
	fmt.Fprintf(&report, "%-40s %10s %6s\n", "step", "worst echo", "lines")
	var rows []row
	for _, st := range steps {
		from := time.Now()
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		st.settle()
		rows = append(rows, row{st.name, from, time.Now()})
		if st.dark {
			continue
		}
		if !sess.waitEchoed(30 * time.Second) {
			worst, _, err := sess.worst(from, time.Now())
			t.Fatalf("%s: lines not echoed for %s (%v)", st.name, worst, err)
		}
		for _, r := range rows {
			worst, lines, err := sess.worst(r.from, r.to)
			if err != nil {
				t.Fatalf("%s: the session broke: %v", r.name, err)
			}
			fmt.Fprintf(&report, "%-40s %10s %6d\n", r.name, worst.Round(time.Millisecond), lines)
		}
		rows = rows[:0]
	}
	t.Logf("ssh session through the walk (a line every %s):\n%s", echoInterval, report.String())
}

// startLaptopMptcpd runs our daemon on the laptop with the built-in
// policy, as a user would install it.
func startLaptopMptcpd(t testing.TB, tb *testbed.Testbed, extra ...string) *background {
	t.Helper()
	bin := requireBinary(t, mptcpdBin, mptcpdErr)
	dir := shmTempDir(t)
	conf := filepath.Join(dir, "mptcpd.conf")
	writeFile(t, conf, "")
	args := append([]string{"--config", conf, "--state-dir", filepath.Join(dir, "state"), "--log=stderr"}, extra...)
	cmd := tb.Laptop.Command(context.Background(), bin, args...)
	d := start(t, "mptcpd", cmd)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("mptcpd stderr:\n%s", d.stderr.String())
		}
	})
	return d
}
