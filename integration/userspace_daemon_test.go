package integration

import (
	"slices"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
)

// TestDaemonUserspaceSSPI runs mptcpd with the sspi plugin in the
// client namespace (path manager switched to userspace by the daemon):
// a connection over eth0 gets exactly one more subflow, from wlan0,
// counted from the kernel's own list of subflows.
func TestDaemonUserspaceSSPI(t *testing.T) {
	t.Parallel()
	echo := requireMptcpecho(t)
	top := newDaemonTopology(t)
	startMptcpd(t, top.client, "match name=eth*,wlan*\n    flags subflow\n", "--path-manager=sspi", "--set-path-manager")
	if name, err := mptcp.PathManager(&mptcp.Config{NetNS: top.client.Handle().FD()}); err != nil || name != "userspace" {
		t.Fatalf("path manager after start: %q, %v; want userspace", name, err)
	}
	startServer(t, top.server, echo, "10.0.1.1:5000")
	held := holdConnection(t, top.client, echo, connWait, 1, "10.0.1.1:5000")
	defer held.release(t, connWait)

	diag, err := mptcpdiag.Dial(&mptcpdiag.Config{NetNS: top.client.Handle().FD()})
	if err != nil {
		t.Fatal(err)
	}
	defer diag.Close()
	subflows := func() []string {
		conns, err := diag.Connections()
		if err != nil {
			t.Fatalf("mptcp_diag: %v", err)
		}
		var got []string
		for _, c := range conns {
			if c.Listening() {
				continue
			}
			for _, s := range c.Subflows {
				got = append(got, s.Local.Addr().String()+" -> "+s.Remote.String())
			}
		}
		return got
	}
	want := []string{"10.0.1.2 -> 10.0.1.1:5000", "10.0.2.2 -> 10.0.1.1:5000"}
	var got []string
	if !waitFor(endpointTimeout, func() bool { got = subflows(); return slices.Equal(got, want) }) {
		t.Fatalf("subflows %q, want %q: one from eth0 and one from wlan0", got, want)
	}
	// Exactly those: nothing more comes.
	time.Sleep(eventQuiet)
	if got := subflows(); !slices.Equal(got, want) {
		t.Errorf("subflows a while later: %q, want %q", got, want)
	}
}
