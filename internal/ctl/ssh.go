package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/mptcpd-go/mptcpd/nl/netns"
)

const sshProxyLong = `ssh-proxy opens an MPTCP connection to HOST PORT for ssh, as its
ProxyCommand:

    ssh -o 'ProxyCommand=mptcpctl ssh-proxy %h %p' -o ProxyUseFdpass=yes HOST

With ProxyUseFdpass (which "mptcpctl ssh" and "mptcpctl ssh-config" set),
mptcpctl hands the connected socket to ssh and exits: ssh then talks MPTCP
itself and no extra process stays in the data path. Without it, mptcpctl
copies between its standard input and output and the connection until
either side closes.

HOST's addresses are tried in the order the resolver gives them, as ssh
does. When this host cannot open MPTCP sockets (net.mptcp.enabled=0, no
MPTCP in the kernel) or the server does not agree to MPTCP, the connection
is plain TCP, and one line on standard error says so.`

const sshLong = `ssh runs the system's ssh with ARGS over MPTCP: it adds

    -o 'ProxyCommand=mptcpctl ssh-proxy %h %p' -o ProxyUseFdpass=yes

to the command line, and replaces itself with ssh. Everything else is
ssh's: its options, its configuration, its exit status. With -n NETNS the
connection is opened in that network namespace.`

const sshConfigLong = `ssh-config prints an ssh_config(5) snippet that makes ssh connect
over MPTCP through "mptcpctl ssh-proxy", for every host or for the HOST
patterns given. Put it in ~/.ssh/config, or in
/etc/ssh/ssh_config.d/mptcp.conf for every user of this machine:

    mptcpctl ssh-config > /etc/ssh/ssh_config.d/mptcp.conf

It also sets ServerAliveInterval and ServerAliveCountMax so that a session
outlives five minutes without any network, and asks the server every 30 s
whether it is still there, which keeps NAT mappings open.`

// sshCommands are ssh-proxy, ssh and ssh-config.
func (r *runner) sshCommands() []*cobra.Command {
	proxy := &cobra.Command{
		Use:               "ssh-proxy HOST PORT",
		Short:             "Connect to HOST PORT over MPTCP for ssh's ProxyCommand",
		Long:              sshProxyLong,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(_ *cobra.Command, args []string) error {
			return r.sshProxy(args[0], args[1])
		},
	}
	ssh := &cobra.Command{
		Use:                "ssh [SSH ARGUMENTS...]",
		Short:              "Run ssh over MPTCP",
		Long:               sshLong,
		DisableFlagParsing: true, // every argument is ssh's
		RunE:               func(_ *cobra.Command, args []string) error { return r.ssh(args) },
	}
	config := &cobra.Command{
		Use:               "ssh-config [HOST-PATTERN...]",
		Short:             "Print an ssh_config snippet that uses MPTCP",
		Long:              sshConfigLong,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(_ *cobra.Command, args []string) error {
			_, err := io.WriteString(r.env.Stdout, sshConfig(r.self(), r.netns, args))
			return err
		},
	}
	return []*cobra.Command{proxy, ssh, config}
}

// self is this program's path, for the ProxyCommand.
func (r *runner) self() string {
	if p, err := os.Executable(); err == nil {
		return p
	}
	return "mptcpctl"
}

// proxyCommand is the ProxyCommand line that runs self's ssh-proxy.
func proxyCommand(self, netns string) string {
	cmd := shellQuote(self)
	if netns != "" {
		cmd += " -n " + shellQuote(netns)
	}
	return cmd + " ssh-proxy %h %p"
}

// shellQuote quotes s for the shell ssh runs ProxyCommand with, when it
// has to. ssh expands % tokens first, so a literal % is doubled.
func shellQuote(s string) string {
	s = strings.ReplaceAll(s, "%", "%%")
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+:=@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func sshConfig(self, netns string, hosts []string) string {
	if len(hosts) == 0 {
		hosts = []string{"*"}
	}
	return "# ssh over Multipath TCP, from `mptcpctl ssh-config`: the connection\n" +
		"# survives moving between networks when the server runs MPTCP.\n" +
		"Host " + strings.Join(hosts, " ") + "\n" +
		"\tProxyCommand " + proxyCommand(self, netns) + "\n" +
		"\tProxyUseFdpass yes\n" +
		"\t# Ask every 30 s; give up after 10 unanswered: 5 minutes.\n" +
		"\tServerAliveInterval 30\n" +
		"\tServerAliveCountMax 10\n"
}

// ssh replaces mptcpctl with the system's ssh, set to use ssh-proxy.
func (r *runner) ssh(args []string) error {
	path, err := exec.LookPath("ssh")
	if err != nil {
		return &ExitError{Code: ExitUsage, Msg: "mptcpctl ssh: " + err.Error()}
	}
	argv := append([]string{"ssh",
		"-o", "ProxyCommand=" + proxyCommand(r.self(), r.netns),
		"-o", "ProxyUseFdpass=yes"}, args...)
	err = syscall.Exec(path, argv, os.Environ())
	return &ExitError{Code: ExitUsage, Msg: fmt.Sprintf("mptcpctl ssh: exec %s: %v", path, err)}
}

// sshProxy connects to host port and gives the socket to ssh through
// standard output, or copies when standard output is not a socket.
func (r *runner) sshProxy(host, port string) error {
	ctx := context.Background()
	conn, note, err := r.dialMPTCP(ctx, host, port)
	if err != nil {
		return &ExitError{Code: ExitUsage, Msg: "mptcpctl ssh-proxy: " + err.Error()}
	}
	defer conn.Close()
	if note != "" {
		fmt.Fprintf(r.env.Stderr, "mptcpctl: %s: %s; the session runs over plain TCP\n", net.JoinHostPort(host, port), note)
	}
	out, _ := r.env.Stdout.(*os.File)
	if out != nil && isSocket(out) {
		if err := passFD(out, conn); err != nil {
			return &ExitError{Code: ExitUsage, Msg: "mptcpctl ssh-proxy: passing the socket to ssh: " + err.Error()}
		}
		return nil
	}
	in := r.env.Stdin
	if in == nil {
		in = os.Stdin
	}
	return relay(conn, in, r.env.Stdout)
}

// dialMPTCP connects over MPTCP in the runner's namespace. note is empty
// for an MPTCP connection, else why it is plain TCP.
func (r *runner) dialMPTCP(ctx context.Context, host, port string) (*net.TCPConn, string, error) {
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, "", fmt.Errorf("port %q: not a number from 0 to 65535", port)
	}
	// Resolved here, in mptcpctl's namespace, whose resolv.conf is the
	// user's; only the connection is made in NETNS.
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, "", err
	}
	var h *netns.Handle
	if r.netns != "" {
		if h, err = netns.Open(r.netns); err != nil {
			return nil, "", err
		}
		defer h.Close()
	}
	var conn *net.TCPConn
	var note string
	err = h.Do(func() error {
		// Addresses one at a time on this (namespace-locked) thread: a
		// literal address makes the Dialer connect in this goroutine,
		// with no happy-eyeballs racer on another thread.
		var d net.Dialer
		d.SetMultipathTCP(true)
		var errs []error
		for _, a := range addrs {
			c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(a.Unmap(), uint16(p)).String())
			if err != nil {
				errs = append(errs, err)
				continue
			}
			conn = c.(*net.TCPConn)
			if ok, _ := conn.MultipathTCP(); !ok {
				note = whyNotMPTCP(a)
			}
			return nil
		}
		return errors.Join(errs...)
	})
	return conn, note, err
}

// whyNotMPTCP tells a host without MPTCP from a server that declined it.
func whyNotMPTCP(a netip.Addr) string {
	family := unix.AF_INET6
	if a.Unmap().Is4() {
		family = unix.AF_INET
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_MPTCP)
	if err != nil {
		return "MPTCP is not available on this host (" + err.Error() + ")"
	}
	unix.Close(fd)
	return "the server did not agree to MPTCP"
}

func isSocket(f *os.File) bool {
	var st unix.Stat_t
	return unix.Fstat(int(f.Fd()), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFSOCK
}

// passFD sends conn's socket over the Unix socket out with SCM_RIGHTS and
// the one byte of data ssh's mm_receive_fd waits for.
func passFD(out *os.File, conn *net.TCPConn) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.Sendmsg(int(out.Fd()), []byte{0}, unix.UnixRights(int(fd)), nil, 0)
	}); err != nil {
		return err
	}
	return serr
}

// relay copies in to conn and conn to out until conn's reading side ends;
// the end of in is passed on as a half-close.
func relay(conn *net.TCPConn, in io.Reader, out io.Writer) error {
	go func() {
		_, _ = io.Copy(conn, in)
		_ = conn.CloseWrite()
	}()
	_, err := io.Copy(out, conn)
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
