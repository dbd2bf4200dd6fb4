package pm

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/mptcpd-go/mptcpd/nl/netmon"
	"github.com/mptcpd-go/mptcpd/policy"
)

// sysfsLink is one directory of a fake /sys/class/net.
type sysfsLink struct {
	name    string
	ifindex int               // written to NAME/ifindex; 0: no directory at all
	files   map[string]string // other files, by name
	dirs    []string          // subdirectories (device, wireless, phy80211)
}

func fakeSysfs(t *testing.T, links ...sysfsLink) string {
	t.Helper()
	root := t.TempDir()
	for _, l := range links {
		if l.ifindex == 0 {
			continue
		}
		dir := filepath.Join(root, l.name)
		files := map[string]string{"ifindex": strconv.Itoa(l.ifindex) + "\n"}
		for k, v := range l.files {
			files[k] = v
		}
		for _, d := range append([]string{""}, l.dirs...) {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for name, body := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

func TestSysfsClassifier(t *testing.T) {
	ether := map[string]string{"type": "1\n", "uevent": "INTERFACE=x\nIFINDEX=1\n"}
	tests := []struct {
		name  string
		link  netmon.Link
		sysfs sysfsLink
		want  policy.Kind
	}{
		{"policy glob wins", netmon.Link{Index: 2, Name: "usb0"}, sysfsLink{"usb0", 2, ether, []string{"device"}}, policy.KindWWAN},
		{"loopback flag", netmon.Link{Index: 1, Name: "lo", Loopback: true}, sysfsLink{}, policy.KindLoopback},
		{"bond", netmon.Link{Index: 3, Name: "bond0", Kind: "bond"}, sysfsLink{}, policy.KindEthernet},
		{"vlan", netmon.Link{Index: 3, Name: "eth0.7", Kind: "vlan"}, sysfsLink{}, policy.KindEthernet},
		{"macvlan", netmon.Link{Index: 3, Name: "mv0", Kind: "macvlan"}, sysfsLink{}, policy.KindEthernet},
		{"veth", netmon.Link{Index: 3, Name: "veth0", Kind: "veth"}, sysfsLink{}, policy.KindVirtual},
		{"wireguard", netmon.Link{Index: 3, Name: "wg0", Kind: "wireguard"}, sysfsLink{}, policy.KindVirtual},
		{"uevent wlan", netmon.Link{Index: 4, Name: "wlp2s0"}, sysfsLink{"wlp2s0", 4, map[string]string{"type": "1", "uevent": "DEVTYPE=wlan\nINTERFACE=wlp2s0\n"}, []string{"device"}}, policy.KindWiFi},
		{"uevent wwan", netmon.Link{Index: 4, Name: "wwp0s20u4"}, sysfsLink{"wwp0s20u4", 4, map[string]string{"type": "1", "uevent": "INTERFACE=wwp0s20u4\nDEVTYPE=wwan\n"}, []string{"device"}}, policy.KindWWAN},
		{"phy80211 without DEVTYPE", netmon.Link{Index: 4, Name: "x0"}, sysfsLink{"x0", 4, ether, []string{"device", "phy80211"}}, policy.KindWiFi},
		{"wireless without DEVTYPE", netmon.Link{Index: 4, Name: "x0"}, sysfsLink{"x0", 4, ether, []string{"device", "wireless"}}, policy.KindWiFi},
		{"raw IP", netmon.Link{Index: 4, Name: "rmnet0"}, sysfsLink{"rmnet0", 4, map[string]string{"type": "65534\n"}, nil}, policy.KindWWAN},
		{"physical ethernet", netmon.Link{Index: 4, Name: "x0"}, sysfsLink{"x0", 4, ether, []string{"device"}}, policy.KindEthernet},
		{"physical, no type", netmon.Link{Index: 4, Name: "x0"}, sysfsLink{"x0", 4, nil, []string{"device"}}, policy.KindEthernet},
		{"physical infiniband", netmon.Link{Index: 4, Name: "ib0"}, sysfsLink{"ib0", 4, map[string]string{"type": "32"}, []string{"device"}}, policy.KindOther},
		{"no device", netmon.Link{Index: 4, Name: "eth9"}, sysfsLink{"eth9", 4, ether, nil}, policy.KindVirtual},
		{"other namespace's sysfs: by name", netmon.Link{Index: 3, Name: "eth0"}, sysfsLink{"eth0", 12, map[string]string{"uevent": "DEVTYPE=wlan\n"}, []string{"device"}}, policy.KindEthernet},
		{"no sysfs: wl", netmon.Link{Index: 3, Name: "wlan0"}, sysfsLink{}, policy.KindWiFi},
		{"no sysfs: ww", netmon.Link{Index: 3, Name: "wwan0"}, sysfsLink{}, policy.KindWWAN},
		{"no sysfs: en", netmon.Link{Index: 3, Name: "enp0s3"}, sysfsLink{}, policy.KindEthernet},
		{"no sysfs: eth", netmon.Link{Index: 3, Name: "eth1"}, sysfsLink{}, policy.KindEthernet},
		{"no sysfs: other", netmon.Link{Index: 3, Name: "foo"}, sysfsLink{}, policy.KindOther},
		{"name leaving root", netmon.Link{Index: 3, Name: ".."}, sysfsLink{}, policy.KindOther},
	}
	p := &policy.Policy{Classify: []policy.ClassifyRule{{Pattern: "usb*", Kind: policy.KindWWAN}}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := fakeSysfs(t, tt.sysfs)
			if got := SysfsClassifier(root, p)(tt.link); got != tt.want {
				t.Errorf("kind of %v: %v, want %v", tt.link, got, tt.want)
			}
		})
	}
}

// A link's sysfs verdict is remembered by index and name; a renamed link
// is looked at again.
func TestSysfsClassifierCache(t *testing.T) {
	root := fakeSysfs(t,
		sysfsLink{"x0", 4, map[string]string{"type": "1"}, []string{"device"}},
		sysfsLink{"x1", 4, map[string]string{"type": "65534"}, nil})
	classify := SysfsClassifier(root, nil)
	if got := classify(netmon.Link{Index: 4, Name: "x0"}); got != policy.KindEthernet {
		t.Fatalf("x0: %v, want ethernet", got)
	}
	if err := os.RemoveAll(filepath.Join(root, "x0")); err != nil {
		t.Fatal(err)
	}
	if got := classify(netmon.Link{Index: 4, Name: "x0"}); got != policy.KindEthernet {
		t.Errorf("x0 again: %v, want the remembered ethernet", got)
	}
	if got := classify(netmon.Link{Index: 4, Name: "x1"}); got != policy.KindWWAN {
		t.Errorf("x0 renamed x1: %v, want wwan", got)
	}
}
