package testbed

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/mptcpd-go/mptcpd/nl/netns"
)

// cmdTimeout bounds every command the testbed runs: ip and tc return in
// milliseconds, so a command still running after this is stuck.
const cmdTimeout = 10 * time.Second

// Namespace is one network namespace of a testbed: the laptop, an access
// point or the server.
type Namespace struct {
	Name string // as `ip netns` knows it
	h    *netns.Handle
}

// newNamespace creates the namespace NAME with lo up and every sysctl the
// testbed relies on set, whatever the host's defaults: a new namespace
// copies the host's IPv4 settings (net.core.devconf_inherit_init_net=0).
func newNamespace(name string, forward bool) (*Namespace, error) {
	if out, err := run(exec.Command("ip", "netns", "add", name)); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %w%s", name, err, out)
	}
	n := &Namespace{Name: name}
	h, err := netns.Open(name)
	if err != nil {
		_ = n.delete()
		return nil, err
	}
	n.h = h
	sysctls := map[string]string{
		"net.mptcp.enabled": "1",
		// The laptop's replies come back on the link their subflow
		// left by, not the one its default route names.
		"net.ipv4.conf.all.rp_filter":     "0",
		"net.ipv4.conf.default.rp_filter": "0",
		"net.ipv4.ip_forward":             "0",
	}
	if forward {
		sysctls["net.ipv4.ip_forward"] = "1"
	}
	for k, v := range sysctls {
		if err := n.Sysctl(k, v); err != nil {
			_ = n.delete()
			return nil, err
		}
	}
	if err := n.ip("link", "set", "lo", "up"); err != nil {
		_ = n.delete()
		return nil, err
	}
	return n, nil
}

// delete kills what still runs inside and removes the namespace's name;
// the kernel frees it once its last socket is closed.
func (n *Namespace) delete() error {
	// Processes the caller started inside with Command (a daemon, say).
	if pids, err := exec.Command("ip", "netns", "pids", n.Name).Output(); err == nil {
		for _, p := range strings.Fields(string(pids)) {
			_ = exec.Command("kill", "-9", p).Run()
		}
	}
	_ = n.h.Close()
	if out, err := run(exec.Command("ip", "netns", "del", n.Name)); err != nil {
		return fmt.Errorf("ip netns del %s: %w%s", n.Name, err, out)
	}
	return nil
}

// Path is the namespace's file under /run/netns, for netns.Open and
// anything else that takes a namespace path.
func (n *Namespace) Path() string { return filepath.Join(netns.Dir, n.Name) }

// FD is the namespace's open descriptor, for nl clients' Config.NetNS.
func (n *Namespace) FD() int { return n.h.FD() }

// String is the namespace's name.
func (n *Namespace) String() string { return n.Name }

// Do runs fn on a thread inside the namespace: sockets it creates belong
// to the namespace and stay there when used from anywhere afterwards.
func (n *Namespace) Do(fn func() error) error { return n.h.Do(fn) }

// Command prepares name to run inside the namespace (ip netns exec, which
// also mounts the namespace's /sys). The caller bounds it with ctx;
// Close kills whatever still runs inside.
func (n *Namespace) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Sysctl writes a net.* sysctl of this namespace, such as
// "net.ipv4.tcp_rto_min_us".
func (n *Namespace) Sysctl(key, value string) error {
	path := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	err := n.Do(func() error { return os.WriteFile(path, []byte(value), 0) })
	if err != nil {
		return fmt.Errorf("%s: sysctl %s=%s: %w", n.Name, key, value, err)
	}
	return nil
}

// ip runs `ip -n NAME args...`.
func (n *Namespace) ip(args ...string) error {
	_, err := n.output("ip", args...)
	return err
}

// tc runs `tc -n NAME args...`.
func (n *Namespace) tc(args ...string) error {
	_, err := n.output("tc", args...)
	return err
}

// ipBatch runs ip commands (without the leading "ip") in one process, so
// that a change of several steps reaches the kernel within microseconds
// of its first step; it stops at the first that fails.
func (n *Namespace) ipBatch(lines ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "-n", n.Name, "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := run(cmd); err != nil {
		return fmt.Errorf("%s: ip -batch %q: %w%s", n.Name, lines, err, out)
	}
	return nil
}

// output runs tool (ip or tc) with -n NAME and returns its stdout.
func (n *Namespace) output(tool string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, tool, append([]string{"-n", n.Name}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %s %s: %w: %s", n.Name, tool, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// run runs cmd and returns its combined output, prefixed for an error
// message, when it fails.
func run(cmd *exec.Cmd) (string, error) {
	out, err := cmd.CombinedOutput()
	if err != nil {
		return ": " + strings.TrimSpace(string(out)), err
	}
	return "", nil
}

// LinkState is one link of a namespace as the kernel reports it:
// flags, IPv4 addresses and counters.
type LinkState struct {
	Name    string
	Index   int
	Up      bool // IFF_UP: administratively up
	LowerUp bool // IFF_LOWER_UP: carrier
	Addrs   []netip.Prefix
	Counters
}

// Counters are a link's byte and packet counters since it was created.
type Counters struct {
	RxBytes, TxBytes     uint64
	RxPackets, TxPackets uint64
	TxDropped            uint64 // e.g. sent while the veth peer was down
}

// Links reads every link of the namespace (`ip -s -j addr show`).
func (n *Namespace) Links() ([]LinkState, error) {
	out, err := n.output("ip", "-s", "-j", "addr", "show")
	if err != nil {
		return nil, err
	}
	links, err := parseLinks(out)
	if err != nil {
		return nil, fmt.Errorf("%s: ip -s -j addr show: %w", n.Name, err)
	}
	return links, nil
}

// Link reads the link called name.
func (n *Namespace) Link(name string) (LinkState, error) {
	links, err := n.Links()
	if err != nil {
		return LinkState{}, err
	}
	for _, l := range links {
		if l.Name == name {
			return l, nil
		}
	}
	return LinkState{}, fmt.Errorf("%s: no link %s: %w", n.Name, name, os.ErrNotExist)
}

// ipLink is the part of iproute2's JSON link and address dump the
// testbed reads.
type ipLink struct {
	Index    int      `json:"ifindex"`
	Name     string   `json:"ifname"`
	Flags    []string `json:"flags"`
	AddrInfo []struct {
		Family    string `json:"family"`
		Local     string `json:"local"`
		PrefixLen int    `json:"prefixlen"`
	} `json:"addr_info"`
	Stats64 struct {
		RX struct {
			Bytes   uint64 `json:"bytes"`
			Packets uint64 `json:"packets"`
		} `json:"rx"`
		TX struct {
			Bytes   uint64 `json:"bytes"`
			Packets uint64 `json:"packets"`
			Dropped uint64 `json:"dropped"`
		} `json:"tx"`
	} `json:"stats64"`
}

// parseLinks decodes `ip -s -j addr show`.
func parseLinks(data []byte) ([]LinkState, error) {
	var raw []ipLink
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	links := make([]LinkState, 0, len(raw))
	for _, r := range raw {
		if r.Name == "" {
			return nil, errors.New("link without a name")
		}
		l := LinkState{Name: r.Name, Index: r.Index, Counters: Counters{
			RxBytes: r.Stats64.RX.Bytes, TxBytes: r.Stats64.TX.Bytes,
			RxPackets: r.Stats64.RX.Packets, TxPackets: r.Stats64.TX.Packets,
			TxDropped: r.Stats64.TX.Dropped,
		}}
		for _, f := range r.Flags {
			switch f {
			case "UP":
				l.Up = true
			case "LOWER_UP":
				l.LowerUp = true
			}
		}
		for _, a := range r.AddrInfo {
			if a.Family != "inet" {
				continue
			}
			addr, err := netip.ParseAddr(a.Local)
			if err != nil {
				return nil, fmt.Errorf("link %s: %w", r.Name, err)
			}
			p := netip.PrefixFrom(addr, a.PrefixLen)
			if !addr.Is4() || !p.IsValid() {
				return nil, fmt.Errorf("link %s: %s/%d is not an IPv4 prefix", r.Name, a.Local, a.PrefixLen)
			}
			l.Addrs = append(l.Addrs, p)
		}
		links = append(links, l)
	}
	return links, nil
}

// randomSuffix names one testbed's namespaces apart from any other's.
func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}
