// Package nstest gives tests a fresh, named network namespace that is
// deleted when the test ends, even on failure. Tests that need one skip
// (not fail) when not root or when the kernel lacks MPTCP.
package nstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/nl/netns"
)

// NS is a named network namespace created for one test.
type NS struct {
	Name string
	t    testing.TB
}

// Require skips the test unless it runs as root on a kernel with MPTCP and
// the ip command.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	if _, err := os.Stat("/proc/sys/net/mptcp/enabled"); err != nil {
		t.Skip("kernel without MPTCP")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2)")
	}
}

// New creates a namespace named "mptcpdt-<random>" with lo up and MPTCP
// enabled, and deletes it in t.Cleanup.
func New(t testing.TB) *NS {
	t.Helper()
	Require(t)
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	ns := &NS{Name: "mptcpdt-" + hex.EncodeToString(b[:]), t: t}
	if out, err := exec.Command("ip", "netns", "add", ns.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", ns.Name, err, out)
	}
	t.Cleanup(func() {
		// Kill anything still running inside before deleting.
		if pids, err := exec.Command("ip", "netns", "pids", ns.Name).Output(); err == nil {
			for _, p := range strings.Fields(string(pids)) {
				_ = exec.Command("kill", "-9", p).Run()
			}
		}
		if out, err := exec.Command("ip", "netns", "del", ns.Name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", ns.Name, err, out)
		}
	})
	ns.MustRun("ip", "link", "set", "lo", "up")
	ns.MustRun("sysctl", "-q", "-w", "net.mptcp.enabled=1")
	return ns
}

// Path is the namespace's file, for netns.Open.
func (ns *NS) Path() string { return "/run/netns/" + ns.Name }

// Command returns cmd prepared to run inside the namespace.
func (ns *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Run runs a command inside the namespace with a 30 s bound and returns its
// stdout, stderr and error.
func (ns *NS) Run(name string, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var o, e bytes.Buffer
	cmd := ns.Command(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// MustRun is Run that fails the test on error.
func (ns *NS) MustRun(name string, args ...string) string {
	ns.t.Helper()
	o, e, err := ns.Run(name, args...)
	if err != nil {
		ns.t.Fatalf("in %s: %s %s: %v\n%s%s", ns.Name, name, strings.Join(args, " "), err, o, e)
	}
	return o
}

// Veth creates a veth pair: a in ns, b in peer, both up.
func Veth(t testing.TB, a *NS, aName string, b *NS, bName string) {
	t.Helper()
	a.MustRun("ip", "link", "add", aName, "type", "veth", "peer", "name", bName, "netns", b.Name)
	a.MustRun("ip", "link", "set", aName, "up")
	b.MustRun("ip", "link", "set", bName, "up")
}

// String is the namespace's name.
func (ns *NS) String() string { return ns.Name }

// Handle opens the namespace for netlink clients (Config.NetNS is its FD)
// and closes it when the test ends.
func (ns *NS) Handle() *netns.Handle {
	ns.t.Helper()
	h, err := netns.Open(ns.Path())
	if err != nil {
		ns.t.Fatal(err)
	}
	ns.t.Cleanup(func() { _ = h.Close() })
	return h
}
