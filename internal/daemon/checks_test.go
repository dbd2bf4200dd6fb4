package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckNetAdmin(t *testing.T) {
	dir := t.TempDir()
	write := func(name, capEff string) string {
		p := filepath.Join(dir, name)
		body := "Name:\tmptcpd\nCapInh:\t0000000000000000\nCapEff:\t" + capEff + "\nCapBnd:\t000001ffffffffff\n"
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := checkNetAdmin(write("root", "000001ffffffffff")); err != nil {
		t.Errorf("root: %v", err)
	}
	if err := checkNetAdmin(write("netadmin", "0000000000001000")); err != nil {
		t.Errorf("CAP_NET_ADMIN only: %v", err)
	}
	err := checkNetAdmin(write("user", "0000000000000000"))
	if err == nil || !strings.Contains(err.Error(), "CAP_NET_ADMIN") {
		t.Errorf("no capabilities: %v, want an error naming CAP_NET_ADMIN", err)
	}
	if err := checkNetAdmin(filepath.Join(dir, "missing")); err != nil {
		t.Errorf("unreadable status must not block start: %v", err)
	}
}

func TestNetworkManagers(t *testing.T) {
	proc := t.TempDir()
	mk := func(pid, comm, ns string) {
		d := filepath.Join(proc, pid)
		if err := os.MkdirAll(filepath.Join(d, "ns"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "comm"), []byte(comm+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if ns != "" {
			if err := os.Symlink(ns, filepath.Join(d, "ns", "net")); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk("10", "NetworkManager", "net:[1]") // ours
	mk("11", "NetworkManager", "net:[2]") // another namespace
	mk("12", "sshd", "net:[1]")
	mk("13", "NetworkManager", "") // namespace unreadable: assume ours
	got := networkManagers(proc, "net:[1]")
	if len(got) != 2 || got[0] != 10 || got[1] != 13 {
		t.Errorf("networkManagers = %v, want [10 13]", got)
	}
	if w := networkManagerWarning(got); !strings.Contains(w, "pid 10") {
		t.Errorf("warning %q does not name the pid", w)
	}
	if w := networkManagerWarning(nil); w != "" {
		t.Errorf("warning without NetworkManager: %q", w)
	}
}
