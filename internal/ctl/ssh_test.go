package ctl

import (
	"bytes"
	"io"
	"net"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// echoServer accepts connections on loopback (MPTCP unless tcpOnly) and
// echoes each.
func echoServer(t *testing.T, tcpOnly bool) (host, port string) {
	t.Helper()
	var lc net.ListenConfig
	lc.SetMultipathTCP(!tcpOnly)
	l, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	host, port, _ = net.SplitHostPort(l.Addr().String())
	return host, port
}

// TestSSHProxyPassesSocket plays ssh with ProxyUseFdpass: the proxy's
// standard output is a Unix socket, on which it must send the connected
// MPTCP socket with one byte of data, then leave.
func TestSSHProxyPassesSocket(t *testing.T) {
	host, port := echoServer(t, false)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "ssh"), os.NewFile(uintptr(fds[1]), "proxy stdout")
	defer ours.Close()
	var stderr bytes.Buffer
	r := &runner{env: Env{Stdout: theirs, Stderr: &stderr}}
	if err := r.sshProxy(host, port); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	if stderr.Len() != 0 {
		t.Errorf("stderr on an MPTCP connection: %q", stderr.String())
	}

	buf, oob := make([]byte, 8), make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(int(ours.Fd()), buf, oob, 0)
	if err != nil || n != 1 {
		t.Fatalf("recvmsg: %d bytes, %v; ssh's mm_receive_fd wants exactly 1", n, err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control messages %v, %v", msgs, err)
	}
	got, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(got) != 1 {
		t.Fatalf("rights %v, %v", got, err)
	}
	if proto, err := unix.GetsockoptInt(got[0], unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil || proto != unix.IPPROTO_MPTCP {
		t.Errorf("passed socket's protocol %d (%v), want IPPROTO_MPTCP", proto, err)
	}
	f := os.NewFile(uintptr(got[0]), "passed")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "SSH-2.0-test\r\n"); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 14)
	if _, err := io.ReadFull(c, line); err != nil || string(line) != "SSH-2.0-test\r\n" {
		t.Errorf("through the passed socket: %q, %v", line, err)
	}
}

// TestSSHProxyCopies: without a socket on standard output the proxy
// copies, and passes the end of its input on as a half-close.
func TestSSHProxyCopies(t *testing.T) {
	host, port := echoServer(t, false)
	var out, stderr bytes.Buffer
	r := &runner{env: Env{Stdin: strings.NewReader("hello\n"), Stdout: &out, Stderr: &stderr}}
	if err := r.sshProxy(host, port); err != nil {
		t.Fatal(err)
	}
	if out.String() != "hello\n" || stderr.Len() != 0 {
		t.Errorf("stdout %q, stderr %q", out.String(), stderr.String())
	}
}

// TestSSHProxyFallback: a server without MPTCP gets plain TCP, and the
// user one line that says so.
func TestSSHProxyFallback(t *testing.T) {
	host, port := echoServer(t, true)
	var out, stderr bytes.Buffer
	r := &runner{env: Env{Stdin: strings.NewReader("x"), Stdout: &out, Stderr: &stderr}}
	if err := r.sshProxy(host, port); err != nil {
		t.Fatal(err)
	}
	want := "mptcpctl: " + net.JoinHostPort(host, port) + ": the server did not agree to MPTCP; the session runs over plain TCP\n"
	if stderr.String() != want || out.String() != "x" {
		t.Errorf("stderr %q, want %q; stdout %q", stderr.String(), want, out.String())
	}
}

func TestSSHProxyErrors(t *testing.T) {
	r := &runner{env: Env{Stdout: io.Discard, Stderr: io.Discard}}
	for _, tc := range []struct{ host, port, want string }{
		{"127.0.0.1", "ssh", `port "ssh": not a number`},
		{"127.0.0.1", "70000", `port "70000": not a number`},
		{"127.0.0.1", "1", "connection refused"},
	} {
		err := r.sshProxy(tc.host, tc.port)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "mptcpctl ssh-proxy: ") {
			t.Errorf("ssh-proxy %s %s: %v, want %q", tc.host, tc.port, err, tc.want)
		}
	}
}

func TestSSHConfig(t *testing.T) {
	got := sshConfig("/usr/bin/mptcpctl", "", nil)
	want := "# ssh over Multipath TCP, from `mptcpctl ssh-config`: the connection\n" +
		"# survives moving between networks when the server runs MPTCP.\n" +
		"Host *\n" +
		"\tProxyCommand /usr/bin/mptcpctl ssh-proxy %h %p\n" +
		"\tProxyUseFdpass yes\n" +
		"\t# Ask every 30 s; give up after 10 unanswered: 5 minutes.\n" +
		"\tServerAliveInterval 30\n" +
		"\tServerAliveCountMax 10\n"
	if got != want {
		t.Errorf("ssh-config:\n%s\nwant:\n%s", got, want)
	}
	got = sshConfig("/opt/my tools/mptcpctl", "lab 1", []string{"*.example.org", "gw"})
	for _, w := range []string{
		"Host *.example.org gw\n",
		"\tProxyCommand '/opt/my tools/mptcpctl' -n 'lab 1' ssh-proxy %h %p\n",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("ssh-config lacks %q:\n%s", w, got)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/usr/bin/mptcpctl": "/usr/bin/mptcpctl",
		"a b":               "'a b'",
		"it's":              `'it'\''s'`,
		"100%":              "100%%",
		"$HOME":             "'$HOME'",
		"":                  "''",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %q, want %q", in, got, want)
		}
	}
}
