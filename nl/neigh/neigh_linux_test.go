package neigh

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
)

func ip(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", ns, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Only the unresolved entries of the link go: not those that resolved,
// not static ones, not another link's.
func TestForgetUnresolved(t *testing.T) {
	ns := nstest.New(t)
	for _, dev := range []string{"a", "c"} {
		ip(t, ns.Name, "link", "add", "name", dev, "type", "veth", "peer", "name", dev+"p")
		ip(t, ns.Name, "link", "set", "dev", dev, "up")
	}
	ip(t, ns.Name, "addr", "add", "10.0.0.1/24", "dev", "a")
	ip(t, ns.Name, "neigh", "add", "10.0.0.2", "dev", "a", "nud", "incomplete")
	ip(t, ns.Name, "neigh", "add", "10.0.0.3", "dev", "a", "nud", "failed")
	ip(t, ns.Name, "neigh", "add", "2001:db8::3", "dev", "a", "nud", "failed")
	ip(t, ns.Name, "neigh", "add", "10.0.0.4", "dev", "a", "lladdr", "02:00:00:00:00:04", "nud", "permanent")
	ip(t, ns.Name, "neigh", "add", "10.0.0.5", "dev", "a", "lladdr", "02:00:00:00:00:05", "nud", "stale")
	ip(t, ns.Name, "neigh", "add", "10.0.0.6", "dev", "c", "nud", "failed")

	h, err := netns.GetFromName(ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	f, err := New(int(h))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	link, err := f.h.LinkByName("a")
	if err != nil {
		t.Fatal(err)
	}
	index := link.Attrs().Index
	n, err := f.ForgetUnresolved(index)
	if err != nil || n != 3 {
		t.Errorf("ForgetUnresolved: %d, %v; want 3 entries", n, err)
	}
	got := ip(t, ns.Name, "neigh", "show")
	for _, want := range []string{"10.0.0.4 dev a", "10.0.0.5 dev a", "10.0.0.6 dev c"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q is gone:\n%s", want, got)
		}
	}
	for _, gone := range []string{"10.0.0.2 ", "10.0.0.3 ", "2001:db8::3 "} {
		if strings.Contains(got, gone) {
			t.Errorf("%q is still there:\n%s", gone, got)
		}
	}
	// Nothing left to forget: not an error.
	if n, err := f.ForgetUnresolved(index); n != 0 || err != nil {
		t.Errorf("again: %d, %v", n, err)
	}
}
