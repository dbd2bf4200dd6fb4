package testbed

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// End is the end of a laptop link where an event happens.
type End int

const (
	// AtAP: the access point's side goes down, as when the laptop walks
	// out of range. The laptop's link stays up and loses its carrier.
	AtAP End = iota
	// AtLaptop: the laptop's own side goes down, as when Wi-Fi is
	// switched off. The kernel removes the routes through it.
	AtLaptop
)

func (e End) String() string {
	if e == AtLaptop {
		return "at the laptop"
	}
	return "at the AP"
}

// blackholePref is the priority of the AP's blackhole rules: after the
// local table (0), so the AP itself still answers ARP and pings.
const blackholePref = "100"

// CarrierLoss takes the link down at end; see the package documentation
// for what the kernel does in each case.
func (l *Link) CarrierLoss(end End) error {
	ns, dev := l.end(end)
	return l.event("carrier loss "+end.String(), func() error {
		return ns.ip("link", "set", dev, "down")
	})
}

// CarrierBack brings the link up again at end and (re)installs the
// laptop's default route through it, which a down at the laptop removed.
func (l *Link) CarrierBack(end End) error {
	ns, dev := l.end(end)
	return l.event("carrier back "+end.String(), func() error {
		if err := ns.ip("link", "set", dev, "up"); err != nil {
			return err
		}
		return l.tb.Laptop.ipBatch(l.defaultRoute())
	})
}

func (l *Link) end(e End) (*Namespace, string) {
	if e == AtLaptop {
		return l.tb.Laptop, l.Name
	}
	return l.AP, apLaptopSide
}

// Renumber moves the link to a new subnet as a DHCP server on a new
// network would: the AP takes the new subnet and the server routes it
// back, then the laptop loses its old address and takes the new one in
// one step, with a new default route. The link stays up throughout.
func (l *Link) Renumber() error {
	b := l.tb
	oldGW, oldPrefix := l.Gateway(), l.Prefix()
	return l.event("renumber", func() error {
		sub, err := b.newSubnet()
		if err != nil {
			return err
		}
		b.mu.Lock()
		l.sub = sub
		b.mu.Unlock()
		if err := l.AP.ipBatch(
			"addr del "+oldGW.String()+"/24 dev "+apLaptopSide,
			"addr add "+l.Gateway().String()+"/24 dev "+apLaptopSide,
		); err != nil {
			return err
		}
		if err := b.Server.ipBatch(
			"route del "+oldPrefix.Masked().String(),
			"route add "+l.Prefix().Masked().String()+" via "+l.apServerAddr().String(),
		); err != nil {
			return err
		}
		return b.Laptop.ipBatch(
			"addr del "+oldPrefix.String()+" dev "+l.Name,
			"addr add "+l.Prefix().String()+" dev "+l.Name,
			l.defaultRoute(),
		)
	})
}

// Blackhole makes the AP drop, silently, every packet it would forward
// in either direction, while every link stays up and the AP itself still
// answers ARP: a path that died without telling anyone.
func (l *Link) Blackhole() error {
	return l.event("blackhole", func() error {
		return l.AP.ipBatch(
			"rule add pref "+blackholePref+" iif "+apLaptopSide+" blackhole",
			"rule add pref "+blackholePref+" iif "+apServerSide+" blackhole",
		)
	})
}

// Forward ends Blackhole.
func (l *Link) Forward() error {
	return l.event("forward", func() error {
		return l.AP.ipBatch(
			"rule del pref "+blackholePref+" iif "+apLaptopSide+" blackhole",
			"rule del pref "+blackholePref+" iif "+apServerSide+" blackhole",
		)
	})
}

// BlackZone blackholes every link at once: all links stay up, nothing
// gets through.
func (b *Testbed) BlackZone() error {
	return b.eachLink((*Link).Blackhole)
}

// EndBlackZone lets every link forward again.
func (b *Testbed) EndBlackZone() error {
	return b.eachLink((*Link).Forward)
}

func (b *Testbed) eachLink(fn func(*Link) error) error {
	var errs []error
	for _, l := range b.Links {
		errs = append(errs, fn(l))
	}
	return errors.Join(errs...)
}

// SetShape replaces the rate limit on every hop of the link's path, both
// directions: the laptop's and the AP's sides of the laptop link, the
// AP's and the server's sides of the uplink. A zero Rate removes it.
func (l *Link) SetShape(s Shape) error {
	hops := []struct {
		ns  *Namespace
		dev string
	}{
		{l.tb.Laptop, l.Name}, {l.AP, apLaptopSide},
		{l.AP, apServerSide}, {l.tb.Server, l.serverSide()},
	}
	var prev Shape
	err := l.event(fmt.Sprintf("shape %s", s), func() error {
		l.tb.mu.Lock()
		prev = l.shape
		l.tb.mu.Unlock()
		for _, h := range hops {
			var err error
			switch {
			case s.Rate != 0:
				err = h.ns.tc(append([]string{"qdisc", "replace", "dev", h.dev, "root"}, s.tbfArgs()...)...)
			case prev.Rate != 0:
				err = h.ns.tc("qdisc", "del", "dev", h.dev, "root")
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		l.tb.mu.Lock()
		l.shape = s
		l.tb.mu.Unlock()
	}
	return err
}

// tbfArgs are the tc arguments of the shape's qdisc.
func (s Shape) tbfArgs() []string {
	burst := s.Burst
	if burst == 0 {
		// The bucket must hold at least one tick's worth of bytes
		// (HZ=250 here: 4 ms) and a 64 KiB GSO packet is segmented
		// when larger than the bucket, so 10 ms and 16 KiB at least.
		burst = max(int(s.Rate/8/100), 16<<10)
	}
	latency := s.Latency
	if latency == 0 {
		latency = 20 * time.Millisecond
	}
	return []string{"tbf",
		"rate", strconv.FormatUint(s.Rate, 10) + "bit",
		"burst", strconv.Itoa(burst),
		"latency", strconv.FormatInt(latency.Microseconds(), 10) + "us",
	}
}

func (s Shape) String() string {
	if s.Rate == 0 {
		return "none"
	}
	return fmt.Sprintf("%g Mbit/s", float64(s.Rate)/1e6)
}

// event applies one change to the link and logs it with its time.
func (l *Link) event(what string, apply func() error) error {
	if l.tb.isClosed() {
		return errClosed
	}
	start := time.Now()
	err := apply()
	l.tb.logf("testbed %s: %s %s (%v)", start.Format("15:04:05.000"), l.Name, what, time.Since(start).Round(time.Microsecond))
	if err != nil {
		return fmt.Errorf("testbed: %s %s: %w", l.Name, what, err)
	}
	return nil
}

func (b *Testbed) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}
