package pm

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/mptcpd-go/mptcpd/nl/netmon"
	"github.com/mptcpd-go/mptcpd/policy"
)

// Classifier tells what kind of link l is.
type Classifier func(l netmon.Link) policy.Kind

// ARPHRD_* (linux/if_arp.h) values read from sysfs "type".
const (
	arphrdEther = 1
	arphrdNone  = 0xfffe // raw-IP links: most cellular modems
)

// The number of links whose sysfs verdict a classifier remembers; past
// it the memory starts over (containers come and go by the thousand).
const classifyCacheSize = 1024

// SysfsClassifier classifies links the way the policy documents, in order:
//
//  1. the policy's classify globs on the name;
//  2. the loopback flag: loopback;
//  3. IFLA_INFO_KIND: bond, team, vlan, macvlan and ipvlan are ethernet
//     (they stand on ethernet), any other kind (veth, bridge, tun,
//     wireguard, vxlan, gre, ...) is virtual;
//  4. sysfs under root (normally /sys/class/net): DEVTYPE=wlan in uevent,
//     or a wireless or phy80211 entry, is wifi; DEVTYPE=wwan or type
//     ARPHRD_NONE (raw-IP modems) is wwan; a device entry makes it
//     physical: ethernet when its type is ARPHRD_ETHER, other otherwise;
//     no device entry: virtual;
//  5. the name, when sysfs cannot be trusted: wl* wifi, ww* wwan, en* and
//     eth* ethernet, anything else other.
//
// sysfs is trusted only when NAME/ifindex holds the link's index: a daemon
// in a network namespace of its own usually sees the host's sysfs, where
// the same name may be another link. The sysfs verdict of a link is
// remembered by index and name.
func SysfsClassifier(root string, p *policy.Policy) Classifier {
	var (
		mu    sync.Mutex
		cache = make(map[sysfsKey]policy.Kind)
	)
	return func(l netmon.Link) policy.Kind {
		if p != nil {
			if k, ok := p.ClassifyName(l.Name); ok {
				return k
			}
		}
		if l.Loopback {
			return policy.KindLoopback
		}
		switch l.Kind {
		case "":
		case "bond", "team", "vlan", "macvlan", "ipvlan":
			return policy.KindEthernet
		default:
			return policy.KindVirtual
		}
		key := sysfsKey{l.Index, l.Name}
		mu.Lock()
		k, ok := cache[key]
		mu.Unlock()
		if ok {
			return k
		}
		k = classifySysfs(root, l)
		mu.Lock()
		if len(cache) >= classifyCacheSize {
			clear(cache)
		}
		cache[key] = k
		mu.Unlock()
		return k
	}
}

type sysfsKey struct {
	index int
	name  string
}

// classifySysfs reads root/NAME, or falls back on the name when that
// directory is not l's.
func classifySysfs(root string, l netmon.Link) policy.Kind {
	// A name with a slash or a dot-dot would leave root; the kernel
	// refuses such names, so meeting one means the input is not a link's.
	if l.Name == "" || strings.ContainsRune(l.Name, '/') || l.Name == "." || l.Name == ".." {
		return kindByName(l.Name)
	}
	dir := filepath.Join(root, l.Name)
	idx, err := os.ReadFile(filepath.Join(dir, "ifindex"))
	if err != nil {
		return kindByName(l.Name)
	}
	if n, err := strconv.Atoi(string(bytes.TrimSpace(idx))); err != nil || n != l.Index {
		return kindByName(l.Name)
	}
	switch ueventDevtype(filepath.Join(dir, "uevent")) {
	case "wlan":
		return policy.KindWiFi
	case "wwan":
		return policy.KindWWAN
	}
	if exists(filepath.Join(dir, "wireless")) || exists(filepath.Join(dir, "phy80211")) {
		return policy.KindWiFi
	}
	typ := -1
	if b, err := os.ReadFile(filepath.Join(dir, "type")); err == nil {
		if n, err := strconv.Atoi(string(bytes.TrimSpace(b))); err == nil {
			typ = n
		}
	}
	if typ == arphrdNone {
		return policy.KindWWAN
	}
	if !exists(filepath.Join(dir, "device")) {
		return policy.KindVirtual
	}
	if typ == arphrdEther || typ == -1 {
		return policy.KindEthernet
	}
	return policy.KindOther // physical, but InfiniBand, CAN, ...
}

// ueventDevtype returns DEVTYPE from a uevent file, "" when absent.
func ueventDevtype(file string) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "DEVTYPE="); ok {
			return v
		}
	}
	return ""
}

func exists(name string) bool {
	_, err := os.Lstat(name)
	return err == nil
}

// kindByName guesses from systemd's and the kernel's naming habits.
func kindByName(name string) policy.Kind {
	switch {
	case strings.HasPrefix(name, "wl"):
		return policy.KindWiFi
	case strings.HasPrefix(name, "ww"):
		return policy.KindWWAN
	case strings.HasPrefix(name, "en"), strings.HasPrefix(name, "eth"):
		return policy.KindEthernet
	}
	return policy.KindOther
}
