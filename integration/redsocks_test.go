package integration

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/testbed"
	"github.com/mptcpd-go/mptcpd/nl/intercept"
)

// The reference pair to our gateway and relay: redsocks on the gateway,
// fed by the same interception, speaking SOCKS5 to dante on the relay's
// host. They talk plain TCP to each other (Debian 12 has no mptcpize to
// make them MPTCP), which costs the same handshake round trip as MPTCP's.
const (
	redsocksPort = 12345
	dantePort    = 1080
)

// startRedsocksDante runs danted on the relay's host and redsocks on the
// gateway, intercepts the LAN's TCP to redsocks, and waits until both
// listen. It skips the test if either is not installed.
func startRedsocksDante(t *testing.T, tb *testbed.Testbed) {
	t.Helper()
	redsocks, err := exec.LookPath("redsocks")
	if err != nil {
		t.Skipf("redsocks (Debian package redsocks) not installed: %v", err)
	}
	danted, err := exec.LookPath("danted")
	if err != nil {
		t.Skipf("danted (Debian package dante-server) not installed: %v", err)
	}
	dir := shmTempDir(t)
	relayAddr := tb.ServerAddrs()[0]

	// Only what the test needs: the laptop's side of any path may connect,
	// and only to the destination's request service.
	danteConf := filepath.Join(dir, "danted.conf")
	writeFile(t, danteConf, fmt.Sprintf(`logoutput: stderr
internal: %s port = %d
external: %s
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: root
client pass {
	from: 10.1.0.0/16 to: %s/32 port = %d
	log: error
}
socks pass {
	from: 10.1.0.0/16 to: %s/32 port = %d
	command: connect
	log: error
}
`, relayAddr, dantePort, testbed.DestinationPrefix.Addr(), relayAddr, dantePort, testbed.DestinationAddr, portRequest))
	startListener(t, tb.Server, "danted", dantePort, danted, "-f", danteConf)

	redsocksConf := filepath.Join(dir, "redsocks.conf")
	// REDIRECT sends the connections to lan0's own address.
	writeFile(t, redsocksConf, fmt.Sprintf(`base {
	log_debug = off;
	log_info = on;
	log = stderr;
	daemon = off;
	redirector = iptables;
}
redsocks {
	local_ip = %s;
	local_port = %d;
	ip = %s;
	port = %d;
	type = socks5;
}
`, testbed.LANPrefix.Addr(), redsocksPort, relayAddr, dantePort))
	startListener(t, tb.Laptop, "redsocks", redsocksPort, redsocks, "-c", redsocksConf)

	rules, err := intercept.Install(intercept.Config{Interfaces: []string{"lan0"}, Port: redsocksPort, NetNS: tb.Laptop.FD()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rules.Remove(); err != nil {
			t.Error(err)
		}
	})
}

// startListener runs bin in ns and waits until a TCP socket listens on
// port there.
func startListener(t *testing.T, ns *testbed.Namespace, name string, port int, bin string, args ...string) {
	t.Helper()
	b := start(t, name, ns.Command(context.Background(), bin, args...))
	t.Cleanup(func() {
		// SIGTERM, not start's SIGKILL: danted then tells the children
		// it forked to end too, which they do soon after it.
		kids := children(b.cmd.Process.Pid)
		if err := b.terminate(stopTimeout); err != nil {
			t.Error(err)
		}
		if !waitFor(stopTimeout, func() bool { return !slices.ContainsFunc(kids, running) }) {
			t.Errorf("%s: its children %v still run %v after it ended", name, kids, stopTimeout)
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", name, b.stderr.String())
		}
	})
	listening := func() bool {
		out, err := exec.Command("ss", "-N", ns.Name, "-Hltn", "sport = :"+strconv.Itoa(port)).Output()
		return err == nil && len(out) > 0
	}
	if !waitFor(10*time.Second, func() bool { return listening() || b.exited() }) || b.exited() {
		t.Fatalf("%s did not start: %s", name, b.stderr.String())
	}
}
