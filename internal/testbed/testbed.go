package testbed

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
)

// Config describes a testbed.
type Config struct {
	// Links are the laptop's links, one access point each. A name's
	// prefix says its kind to a path manager: wlan*, wwan* or lte*, eth*.
	Links []LinkConfig
	// ServerAddrs is how many addresses the server has (10.3.0.1, .2, ...);
	// each is reachable through every access point. 0 means 1.
	ServerAddrs int
	// Congestion is the TCP congestion control of the flows' sockets,
	// both ends; "" means cubic, Linux's default. The namespaces' own
	// default is the host's (bbr on this project's machines), which only
	// the host may change: a namespace may set only the host's
	// net.ipv4.tcp_allowed_congestion_control, a socket with
	// CAP_NET_ADMIN any.
	Congestion string
	// LAN puts a client behind the laptop, which is then a home
	// gateway: the client's lan0 ↔ the laptop's lan0, 192.168.1.0/24,
	// the client's default route through the laptop. The laptop does not
	// forward: a client reaches beyond it only through a relay on it.
	LAN bool
	// Destination puts a host behind the server, which is then a relay:
	// the server's dst0 ↔ the destination's dst0, 203.0.113.0/24. The
	// server does not forward: the destination is reached only through a
	// relay on the server.
	Destination bool
	// Logf, when set, hears of every event as it is applied.
	Logf func(format string, args ...any)
}

// LinkConfig is one link of the laptop and the path behind it.
type LinkConfig struct {
	Name string // the laptop's interface, at most 15 bytes
	// Metric is the metric of the laptop's default route through this
	// link; 0 means 100 × (position + 1), so the first link is preferred.
	Metric int
	// Shape limits the rate of every hop of the path, both directions.
	Shape Shape
	// Delay is added by the AP to every packet it forwards, each way:
	// the path's round trip is twice this. 0: none (an idle path's
	// round trip is then tens of microseconds).
	Delay time.Duration
}

// Shape is a tbf rate limit. Without netem on this kernel there is no
// added delay: a packet waits only in the tbf queue, at most Latency.
type Shape struct {
	Rate  uint64 // bits per second; 0 means no limit
	Burst int    // bytes the bucket holds; 0 means 10 ms at Rate, at least 16 KiB
	// Latency is the longest a packet may wait in the queue (tbf's
	// latency, which sizes its limit); 0 means 20 ms.
	Latency time.Duration
}

// Addresses: the laptop side of a path is 10.1.N.0/24 (the AP .1, the
// laptop .2, N counting up from the first link, renumbering takes the next
// N); the server side of link i is 10.2.i+1.0/24 (the AP .1, the server
// .2); the server's own addresses are 10.3.0.K/32 on its loopback.
var (
	laptopNet = netip.AddrFrom4([4]byte{10, 1, 0, 0})
	serverNet = netip.AddrFrom4([4]byte{10, 2, 0, 0})
	serviceIP = netip.AddrFrom4([4]byte{10, 3, 0, 0})

	// LANPrefix is the laptop's address on the LAN, ClientAddr the
	// client's.
	LANPrefix  = netip.MustParsePrefix("192.168.1.1/24")
	ClientAddr = netip.MustParseAddr("192.168.1.2")
	// DestinationPrefix is the server's address towards the
	// destination, DestinationAddr the destination's.
	DestinationPrefix = netip.MustParsePrefix("203.0.113.1/24")
	DestinationAddr   = netip.MustParseAddr("203.0.113.2")
)

// Interface names inside an access point and on the server.
const (
	apLaptopSide = "lan"  // faces the laptop
	apServerSide = "wan"  // faces the server
	serverPrefix = "via-" // + the laptop link's name: the server's side of that AP
)

// Testbed is a laptop, one access point per laptop link, and a server,
// each in its own network namespace.
type Testbed struct {
	Laptop *Namespace
	Server *Namespace
	Links  []*Link
	// Client and Destination exist with Config.LAN and
	// Config.Destination.
	Client      *Namespace
	Destination *Namespace

	logf        func(format string, args ...any)
	serverAddrs []netip.Addr
	congestion  string

	mu       sync.Mutex
	nextNet  int // the next laptop-side subnet, 10.1.nextNet.0/24
	flows    []*Flow
	closed   bool
	closeErr error
}

// Link is one laptop link, its access point and the path to the server.
type Link struct {
	Name string     // the laptop's interface
	AP   *Namespace // the access point's router

	tb     *Testbed
	index  int // position in Config.Links
	metric int

	delay *delayLine // nil without LinkConfig.Delay

	// Guarded by tb.mu.
	sub   int // the laptop-side subnet: 10.1.sub.0/24
	shape Shape
}

// New builds a testbed for a test and removes it when the test ends. It
// skips the test without root, MPTCP or the ip and tc commands, and fails
// it when the testbed cannot be built.
func New(tb testing.TB, cfg Config) *Testbed {
	tb.Helper()
	nstest.Require(tb)
	if _, err := exec.LookPath("tc"); err != nil {
		tb.Skip("needs the tc command (iproute2)")
	}
	b, err := Start(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := b.Close(); err != nil {
			tb.Error(err)
		}
	})
	return b
}

// Start builds a testbed; Close removes it. Nothing outside its own
// namespaces is touched.
func Start(cfg Config) (*Testbed, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	b := &Testbed{logf: cfg.Logf, nextNet: 1}
	if b.logf == nil {
		b.logf = func(string, ...any) {}
	}
	if err := b.build(cfg); err != nil {
		return nil, errors.Join(err, b.Close())
	}
	return b, nil
}

func (cfg *Config) validate() error {
	if len(cfg.Links) == 0 {
		return errors.New("testbed: no links")
	}
	// 10.2.i+1.0/24 per link, 10.3.0.K per server address.
	if len(cfg.Links) > 200 || cfg.ServerAddrs < 0 || cfg.ServerAddrs > 254 {
		return fmt.Errorf("testbed: %d links, %d server addresses: too many", len(cfg.Links), cfg.ServerAddrs)
	}
	seen := map[string]bool{}
	for _, l := range cfg.Links {
		// The server's side is named "via-" + the name.
		if l.Name == "" || len(serverPrefix+l.Name) > 15 || seen[l.Name] || l.Name == "lo" {
			return fmt.Errorf("testbed: link name %q: empty, duplicate or longer than %d bytes", l.Name, 15-len(serverPrefix))
		}
		seen[l.Name] = true
	}
	return nil
}

func (b *Testbed) build(cfg Config) error {
	prefix := "tb-" + randomSuffix() + "-"
	var err error
	b.congestion = cfg.Congestion
	if b.congestion == "" {
		b.congestion = "cubic"
	}
	if b.Laptop, err = newNamespace(prefix+"laptop", false); err != nil {
		return err
	}
	if b.Server, err = newNamespace(prefix+"server", false); err != nil {
		return err
	}
	n := max(cfg.ServerAddrs, 1)
	for k := range n {
		a := addrIn(serviceIP, 0, k+1)
		b.serverAddrs = append(b.serverAddrs, a)
		if err := b.Server.ip("addr", "add", a.String()+"/32", "dev", "lo"); err != nil {
			return err
		}
	}
	if cfg.LAN {
		if b.Client, err = newNamespace(prefix+"client", false); err != nil {
			return err
		}
		if err := stub(b.Laptop, b.Client, "lan0", LANPrefix, ClientAddr); err != nil {
			return err
		}
	}
	if cfg.Destination {
		if b.Destination, err = newNamespace(prefix+"dest", false); err != nil {
			return err
		}
		if err := stub(b.Server, b.Destination, "dst0", DestinationPrefix, DestinationAddr); err != nil {
			return err
		}
	}
	for i, lc := range cfg.Links {
		l := &Link{Name: lc.Name, tb: b, index: i, metric: lc.Metric}
		if l.metric == 0 {
			l.metric = 100 * (i + 1)
		}
		if l.AP, err = newNamespace(prefix+"ap-"+lc.Name, true); err != nil {
			return err
		}
		b.Links = append(b.Links, l)
		if err := l.build(); err != nil {
			return err
		}
		if lc.Shape.Rate != 0 {
			if err := l.SetShape(lc.Shape); err != nil {
				return err
			}
		}
		if lc.Delay > 0 {
			if err := l.startDelay(lc.Delay); err != nil {
				return err
			}
		}
	}
	return nil
}

// build wires the link: laptop ↔ AP ↔ server, addresses and routes.
func (l *Link) build() error {
	b := l.tb
	sub, err := b.newSubnet()
	if err != nil {
		return err
	}
	l.sub = sub
	if err := veth(b.Laptop, l.Name, l.AP, apLaptopSide); err != nil {
		return err
	}
	if err := veth(l.AP, apServerSide, b.Server, l.serverSide()); err != nil {
		return err
	}
	if err := l.AP.ipBatch(
		"addr add "+l.Gateway().String()+"/24 dev "+apLaptopSide,
		"addr add "+l.apServerAddr().String()+"/24 dev "+apServerSide,
		"route add "+serviceIP.String()+"/24 via "+l.serverAddr().String(),
	); err != nil {
		return err
	}
	if err := b.Server.ipBatch(
		"addr add "+l.serverAddr().String()+"/24 dev "+l.serverSide(),
		"route add "+l.Prefix().Masked().String()+" via "+l.apServerAddr().String(),
	); err != nil {
		return err
	}
	return b.Laptop.ipBatch(
		"addr add "+l.Prefix().String()+" dev "+l.Name,
		l.defaultRoute(),
	)
}

// stub joins a host behind router by a link called name on both sides:
// router at routerAddr, host at hostAddr with its default route through
// the router.
func stub(router, host *Namespace, name string, routerAddr netip.Prefix, hostAddr netip.Addr) error {
	if err := veth(router, name, host, name); err != nil {
		return err
	}
	if err := router.ip("addr", "add", routerAddr.String(), "dev", name); err != nil {
		return err
	}
	return host.ipBatch(
		"addr add "+netip.PrefixFrom(hostAddr, routerAddr.Bits()).String()+" dev "+name,
		"route add default via "+routerAddr.Addr().String(),
	)
}

// veth creates a veth pair a (in na) ↔ b (in nb), both up.
func veth(na *Namespace, a string, nb *Namespace, b string) error {
	if err := na.ip("link", "add", "name", a, "type", "veth", "peer", "name", b, "netns", nb.Name); err != nil {
		return err
	}
	if err := na.ip("link", "set", a, "up"); err != nil {
		return err
	}
	return nb.ip("link", "set", b, "up")
}

// newSubnet takes the next laptop-side subnet.
func (b *Testbed) newSubnet() (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.nextNet > 254 {
		return 0, errors.New("testbed: out of laptop-side subnets (10.1.1-254.0/24)")
	}
	n := b.nextNet
	b.nextNet++
	return n, nil
}

// ServerAddrs are the server's addresses, reachable through every AP.
func (b *Testbed) ServerAddrs() []netip.Addr { return append([]netip.Addr(nil), b.serverAddrs...) }

// Link returns the link called name, or nil.
func (b *Testbed) Link(name string) *Link {
	for _, l := range b.Links {
		if l.Name == name {
			return l
		}
	}
	return nil
}

// Close stops the flows still running, kills processes left inside the
// namespaces and deletes them. It is safe to call more than once.
func (b *Testbed) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return b.closeErr
	}
	b.closed = true
	flows := b.flows
	b.mu.Unlock()
	for _, f := range flows {
		f.Stop(0)
	}
	for _, l := range b.Links {
		if l.delay != nil {
			l.delay.stop()
		}
	}
	var errs []error
	for _, ns := range b.namespaces() {
		errs = append(errs, ns.delete())
	}
	b.closeErr = errors.Join(errs...)
	return b.closeErr
}

// namespaces lists every namespace made so far.
func (b *Testbed) namespaces() []*Namespace {
	var all []*Namespace
	for _, ns := range []*Namespace{b.Laptop, b.Server, b.Client, b.Destination} {
		if ns != nil {
			all = append(all, ns)
		}
	}
	for _, l := range b.Links {
		all = append(all, l.AP)
	}
	return all
}

// Prefix is the laptop's current address on the link, with its subnet.
func (l *Link) Prefix() netip.Prefix {
	l.tb.mu.Lock()
	defer l.tb.mu.Unlock()
	return netip.PrefixFrom(addrIn(laptopNet, l.sub, 2), 24)
}

// Addr is the laptop's current address on the link.
func (l *Link) Addr() netip.Addr { return l.Prefix().Addr() }

// Gateway is the AP's current address on the laptop's side.
func (l *Link) Gateway() netip.Addr {
	l.tb.mu.Lock()
	defer l.tb.mu.Unlock()
	return addrIn(laptopNet, l.sub, 1)
}

// State reads the laptop's side of the link.
func (l *Link) State() (LinkState, error) { return l.tb.Laptop.Link(l.Name) }

// APState reads the AP's side of the link, facing the laptop.
func (l *Link) APState() (LinkState, error) { return l.AP.Link(apLaptopSide) }

func (l *Link) apServerAddr() netip.Addr { return addrIn(serverNet, l.index+1, 1) }
func (l *Link) serverAddr() netip.Addr   { return addrIn(serverNet, l.index+1, 2) }
func (l *Link) serverSide() string       { return serverPrefix + l.Name }

// defaultRoute is the ip command (without "ip") that (re)installs the
// laptop's default route through the link, as a DHCP client would.
func (l *Link) defaultRoute() string {
	return fmt.Sprintf("route replace default via %s dev %s metric %d", l.Gateway(), l.Name, l.metric)
}

// addrIn is base with its third and fourth bytes set.
func addrIn(base netip.Addr, c, d int) netip.Addr {
	a := base.As4()
	a[2], a[3] = byte(c), byte(d)
	return netip.AddrFrom4(a)
}

// errClosed is returned by whatever is asked of a closed testbed.
var errClosed = fmt.Errorf("testbed: closed: %w", os.ErrClosed)
