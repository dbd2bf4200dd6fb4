package integration

// BenchmarkRelay measures what a relay costs on a fast path, where the
// proxies rather than the links are the bottleneck: throughput (Gbit/s)
// of one TCP download of relayBenchBytes per op, and the CPU the proxy
// processes spend on it (cpu-s/GB: their utime+stime, gateway side and
// relay side summed, per 10^9 bytes moved).
//
// Topology: namespace client --veth-- gw --veth-- dst. Both proxies of
// each pair run in gw and talk over its lo (the "loopback" leg), so the
// links cost only in-kernel copies and the numbers are about the proxies.
// The client's connection arrives on gw's lan0 and is intercepted there
// by the same nl/intercept rules for every transparent proxy; the proxy's
// own dial to dst leaves from gw itself (output path), which prerouting
// never sees.
//
// The rows, in one run so that they share the machine's state:
//   - direct: client to dst routed through gw, no proxy: the ceiling.
//   - socat: two chained socat processes, plain TCP (socat 1.7.4 knows no
//     MPTCP): a bare copy, the least any userspace relay can cost.
//   - shadowsocks: ss-redir (gateway) + ss-server (relay) with an AEAD
//     cipher and --mptcp on both: the tool people use for this today.
//     Upstream 3.3.5's --mptcp is the out-of-tree kernel's setsockopt
//     (SOL_TCP, 42 or 26), meaningless upstream; Debian's 3.3.5+ds-9 and
//     later backport upstream commit 1630764, which opens IPPROTO_MPTCP
//     sockets instead ("enable multipath TCP (upstream)" in its log).
//     Checked here with kernel 6.18: sock_diag lists the ss-redir to
//     ss-server connection as MPTCP, not fallen back. The benchmark logs
//     which it finds each run, as another build may differ.
//   - mptcpd-relay: our gateway and relay roles; their leg is MPTCP.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
	"github.com/mptcpd-go/mptcpd/nl/intercept"
	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
)

const (
	// relayBenchBytes is one op: long enough that connection setup and
	// slow start are noise, short enough that the slowest row's ramp-up
	// stays within a few seconds.
	relayBenchBytes = 256 << 20
	// Ports: the destination's, the gateway proxies' transparent
	// listener, and the relay proxies' listener on gw's lo.
	relayBenchDstPort   = 5001
	relayBenchRedirPort = 7442
	relayBenchRelayPort = 7443
	// relayBenchCipher: although the CPU has AES-NI, aes-128-gcm cost
	// ss-redir + ss-server 11-12 cpu-s/GB here against 4.2 for
	// chacha20-ietf-poly1305 (shadowsocks-libev's default), at no better
	// throughput.
	relayBenchCipher = "chacha20-ietf-poly1305"
	// relayBenchSocatBuffer: socat's default 8 KiB buffer makes it count
	// syscalls rather than copy bytes (here 1.4 Gbit/s at 5.2 cpu-s/GB,
	// against about 7 and 1.2 with 128 KiB, what a bare copy loop would
	// use).
	relayBenchSocatBuffer = "131072"
	// relayBenchTimeout bounds every connection (a dial, an op, a probe).
	relayBenchTimeout = 60 * time.Second
)

// Documentation prefixes, alone in their namespaces.
var (
	relayBenchClientAddr = netip.MustParsePrefix("192.0.2.2/24")
	relayBenchLANAddr    = netip.MustParsePrefix("192.0.2.1/24")
	relayBenchWANAddr    = netip.MustParsePrefix("198.51.100.1/24")
	relayBenchDstAddr    = netip.MustParsePrefix("198.51.100.2/24")
)

func BenchmarkRelay(b *testing.B) {
	nstest.Require(b)
	rows := []struct {
		name  string
		tools []string
		start func(b *testing.B, n *relayBenchNet) []*background // the proxies, gateway side first
		mptcp bool                                               // the proxies' leg must be MPTCP
	}{
		{"direct", nil, func(*testing.B, *relayBenchNet) []*background { return nil }, false},
		{"socat", []string{"socat"}, startSocatPair, false},
		{"shadowsocks", []string{"ss-redir", "ss-server"}, startShadowsocksPair, false},
		{"mptcpd-relay", nil, startMptcpdRelayPair, true},
	}
	for _, r := range rows {
		b.Run(r.name, func(b *testing.B) {
			for _, tool := range r.tools {
				if _, err := exec.LookPath(tool); err != nil {
					b.Skipf("%s not installed: %v", tool, err)
				}
			}
			n := newRelayBenchNet(b)
			procs := r.start(b, n)
			n.probe(b, r.name, procs, r.mptcp)

			before := proxyCPU(b, procs)
			buf := make([]byte, 256<<10)
			b.SetBytes(relayBenchBytes)
			for b.Loop() {
				if err := n.download(buf); err != nil {
					b.Fatal(err)
				}
			}
			elapsed := b.Elapsed()
			after := proxyCPU(b, procs)

			gb := float64(b.N) * relayBenchBytes / 1e9
			b.ReportMetric(gb*8/elapsed.Seconds(), "Gbit/s")
			var cpu time.Duration
			split := make([]string, len(procs))
			for i, p := range procs {
				cpu += after[i] - before[i]
				split[i] = fmt.Sprintf("%s %.3f", p.name, (after[i]-before[i]).Seconds()/gb)
			}
			// direct has no proxy: 0 is its true cost, and keeps the
			// column in every row.
			b.ReportMetric(cpu.Seconds()/gb, "cpu-s/GB")
			if len(split) > 0 {
				b.Logf("cpu-s/GB by process: %s", strings.Join(split, ", "))
			}
		})
	}
}

// relayBenchNet is one row's three namespaces and the destination's server.
type relayBenchNet struct {
	client, gw, dst *nstest.NS
}

func newRelayBenchNet(b *testing.B) *relayBenchNet {
	b.Helper()
	n := &relayBenchNet{client: nstest.New(b), gw: nstest.New(b), dst: nstest.New(b)}
	nstest.Veth(b, n.client, "eth0", n.gw, "lan0")
	nstest.Veth(b, n.gw, "wan0", n.dst, "eth0")
	n.client.MustRun("ip", "addr", "add", relayBenchClientAddr.String(), "dev", "eth0")
	n.client.MustRun("ip", "route", "add", "default", "via", relayBenchLANAddr.Addr().String())
	n.gw.MustRun("ip", "addr", "add", relayBenchLANAddr.String(), "dev", "lan0")
	n.gw.MustRun("ip", "addr", "add", relayBenchWANAddr.String(), "dev", "wan0")
	// Forwarding is for direct only: the other rows' client traffic is
	// redirected to a local listener before routing.
	n.gw.MustRun("sysctl", "-qw", "net.ipv4.ip_forward=1")
	n.dst.MustRun("ip", "addr", "add", relayBenchDstAddr.String(), "dev", "eth0")
	n.dst.MustRun("ip", "route", "add", "default", "via", relayBenchWANAddr.Addr().String())
	n.serve(b)
	return n
}

// serve runs the destination: every connection gets relayBenchBytes, then
// FIN.
func (n *relayBenchNet) serve(b *testing.B) {
	b.Helper()
	var lc net.ListenConfig
	lc.SetMultipathTCP(false) // a plain server, as on the Internet
	var ln net.Listener
	if err := n.dst.Handle().Do(func() (err error) {
		ln, err = lc.Listen(context.Background(), "tcp4", netip.AddrPortFrom(relayBenchDstAddr.Addr(), relayBenchDstPort).String())
		return err
	}); err != nil {
		b.Fatalf("destination listen: %v", err)
	}
	var wg sync.WaitGroup
	b.Cleanup(func() { ln.Close(); wg.Wait() })
	chunk := make([]byte, 1<<20)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(relayBenchTimeout))
				for left := relayBenchBytes; left > 0; left -= len(chunk) {
					if _, err := c.Write(chunk[:min(left, len(chunk))]); err != nil {
						return // a probe hung up
					}
				}
			})
		}
	})
}

// dial connects from the client to the destination; a proxy, if any,
// intercepts it on the way.
func (n *relayBenchNet) dial() (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	d.SetMultipathTCP(false) // a LAN client knows nothing of MPTCP
	var c net.Conn
	err := n.client.Handle().Do(func() (err error) {
		c, err = d.Dial("tcp4", netip.AddrPortFrom(relayBenchDstAddr.Addr(), relayBenchDstPort).String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("client dial: %w", err)
	}
	_ = c.SetDeadline(time.Now().Add(relayBenchTimeout))
	return c, nil
}

// download is one op: a whole download, checked for length.
func (n *relayBenchNet) download(buf []byte) error {
	c, err := n.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	var got int64
	for {
		k, err := c.Read(buf)
		got += int64(k)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("download after %d bytes: %w", got, err)
		}
	}
	if got != relayBenchBytes {
		return fmt.Errorf("download: got %d bytes, want %d", got, relayBenchBytes)
	}
	return nil
}

// probe waits until the chain carries data (some proxies say they listen
// before their peer does), checks with sock_diag whether gw holds MPTCP
// connections while it does, and waits for the proxies to settle.
func (n *relayBenchNet) probe(b *testing.B, name string, procs []*background, wantMPTCP bool) {
	b.Helper()
	var c net.Conn
	var err error
	ok := waitFor(10*time.Second, func() bool {
		if c, err = n.dial(); err != nil {
			return false
		}
		if _, err = io.ReadFull(c, make([]byte, 1<<20)); err != nil {
			c.Close()
			return false
		}
		return true
	})
	if !ok {
		for _, p := range procs {
			b.Logf("%s output:\n%s%s", p.name, p.stdout.String(), p.stderr.String())
		}
		b.Fatalf("%s: no data through the chain: %v", name, err)
	}
	defer c.Close()
	diag, err := mptcpdiag.Dial(&mptcpdiag.Config{NetNS: n.gw.Handle().FD()})
	if err != nil {
		b.Fatal(err)
	}
	defer diag.Close()
	conns, err := diag.Connections()
	if err != nil {
		b.Fatalf("gw MPTCP connections: %v", err)
	}
	var mp, fallback int
	for _, cn := range conns {
		switch {
		case cn.Listening():
		case cn.Info.Flags&mptcpdiag.InfoFallback != 0:
			fallback++
		default:
			mp++
		}
	}
	leg := "TCP"
	if mp > 0 {
		leg = "MPTCP"
	}
	if len(procs) > 0 {
		b.Logf("%s: proxies' leg is %s (gw holds %d MPTCP sockets, %d fallen back to TCP, during a transfer)", name, leg, mp, fallback)
	}
	if wantMPTCP && mp == 0 {
		b.Fatalf("%s: want an MPTCP leg, gw holds no MPTCP connection: %+v", name, conns)
	}
	c.Close()
	// The probe's connections must be gone (socat's children reaped) for
	// the CPU reading to be whole.
	proxyCPU(b, procs)
}

// startSocatPair runs gateway socat (the transparent listener) chained to
// relay socat (on lo) which dials the destination.
func startSocatPair(b *testing.B, n *relayBenchNet) []*background {
	b.Helper()
	n.intercept(b)
	relayArgs := []string{"-d", "-d", "-b", relayBenchSocatBuffer,
		fmt.Sprintf("TCP4-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr", relayBenchRelayPort),
		fmt.Sprintf("TCP4:%s:%d", relayBenchDstAddr.Addr(), relayBenchDstPort)}
	relayer := startBenchProc(b, n.gw, "relay socat", "listening on", "socat", relayArgs...)
	gwArgs := []string{"-d", "-d", "-b", relayBenchSocatBuffer,
		fmt.Sprintf("TCP4-LISTEN:%d,fork,reuseaddr", relayBenchRedirPort),
		fmt.Sprintf("TCP4:127.0.0.1:%d", relayBenchRelayPort)}
	gateway := startBenchProc(b, n.gw, "gateway socat", "listening on", "socat", gwArgs...)
	return []*background{gateway, relayer}
}

// startShadowsocksPair runs ss-redir (gateway) and ss-server (relay, on lo).
func startShadowsocksPair(b *testing.B, n *relayBenchNet) []*background {
	b.Helper()
	n.intercept(b)
	common := []string{"-k", "relay-bench", "-m", relayBenchCipher, "-s", "127.0.0.1", "-p", strconv.Itoa(relayBenchRelayPort), "--mptcp"}
	relayer := startBenchProc(b, n.gw, "ss-server", "listening", "ss-server", common...)
	gateway := startBenchProc(b, n.gw, "ss-redir", "listening", "ss-redir",
		append(common, "-b", "0.0.0.0", "-l", strconv.Itoa(relayBenchRedirPort))...)
	return []*background{gateway, relayer}
}

// startMptcpdRelayPair runs our two roles; the gateway installs its own
// interception.
func startMptcpdRelayPair(b *testing.B, n *relayBenchNet) []*background {
	b.Helper()
	bin := requireBinary(b, mptcpdRelayBin, mptcpdRelayErr)
	key, noConf := relayKeyFiles(b)
	relayAddr := fmt.Sprintf("127.0.0.1:%d", relayBenchRelayPort)
	relayer := startBenchProc(b, n.gw, "relay", "listening", bin, "--config", noConf, "--role=relay",
		"--listen="+relayAddr, "--key-file="+key, "--allow-destinations="+relayBenchDstAddr.Masked().String(), "--log=stderr")
	gateway := startBenchProc(b, n.gw, "gateway", "listening", bin, "--config", noConf, "--role=gateway",
		"--relay="+relayAddr, "--key-file="+key, "--intercept=lan0",
		fmt.Sprintf("--transparent=0.0.0.0:%d", relayBenchRedirPort), "--log=stderr")
	return []*background{gateway, relayer}
}

// intercept installs, for the third-party proxies, the rules our gateway
// installs for itself.
func (n *relayBenchNet) intercept(b *testing.B) {
	b.Helper()
	rules, err := intercept.Install(intercept.Config{
		Table:      "relay_bench",
		Interfaces: []string{"lan0"},
		Port:       relayBenchRedirPort,
		NetNS:      n.gw.Handle().FD(),
	})
	if err != nil {
		b.Fatalf("intercept in %s: %v", n.gw, err)
	}
	b.Cleanup(func() {
		if err := rules.Remove(); err != nil {
			b.Errorf("intercept in %s: %v", n.gw, err)
		}
	})
}

// proxyCPU is each proxy's CPU time so far, its reaped children's
// included (socat forks one per connection). It first waits, bounded,
// until no proxy has a live child, whose time would not be counted yet.
func proxyCPU(b *testing.B, procs []*background) []time.Duration {
	b.Helper()
	busy := func() bool {
		return slices.ContainsFunc(procs, func(p *background) bool { return slices.ContainsFunc(children(p.cmd.Process.Pid), running) })
	}
	if !waitFor(10*time.Second, func() bool { return !busy() }) {
		b.Fatalf("proxies still have children 10s after their connections ended")
	}
	cpu := make([]time.Duration, len(procs))
	for i, p := range procs {
		var err error
		// Children too: socat forks one per connection.
		if cpu[i], err = procCPU(p.cmd.Process.Pid, true); err != nil {
			b.Fatalf("%s: %v", p.name, err)
		}
	}
	return cpu
}

// startBenchProc runs bin in ns and waits until its output says ready
// (ip netns exec execs bin: the PID is the proxy's own, for its CPU time).
func startBenchProc(b *testing.B, ns *nstest.NS, name, ready, bin string, args ...string) *background {
	b.Helper()
	return startUntil(b, name, ns.Command(context.Background(), bin, args...), ready, 1)
}
