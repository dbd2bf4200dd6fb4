package netmon_test

import (
	"context"
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
	"github.com/mptcpd-go/mptcpd/nl/netmon"
)

// BenchmarkAddrNotification measures the notification latency: from the
// moment a RTM_NEWADDR request is sent to the AddrEvent arriving on
// Events. The request goes out from another goroutine, as from another
// process: the kernel sends the notification before the request returns,
// so a consumer that waited for its own request would measure the request.
// It needs root (it skips otherwise) and watches a fresh namespace. Run it
// with a modest count, e.g. -benchtime=300x, and compare p50-µs.
func BenchmarkAddrNotification(b *testing.B) {
	ns, peer := nstest.New(b), nstest.New(b)
	nstest.Veth(b, ns, "bench0", peer, "bench1")
	fd := ns.Handle().FD()
	m, err := netmon.Start(context.Background(), netmon.Config{NetNS: fd})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	c, err := netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{NetNS: fd})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()

	// next returns the next event, failing the benchmark after a while.
	next := func() netmon.Event {
		select {
		case ev, ok := <-m.Events():
			if !ok {
				b.Fatal("the monitor stopped")
			}
			return ev
		case <-time.After(5 * time.Second):
			b.Fatal("no event within 5s")
		}
		return nil
	}
	// until reads events until one of each wanted kind arrived, in any
	// order (the old monitor did not keep it across kinds), and returns
	// when the address event arrived.
	until := func(addr netmon.AddrEvent, route netmon.RouteEvent) time.Time {
		var addrAt time.Time
		routeSeen := false
		for addrAt.IsZero() || !routeSeen {
			switch ev := next().(type) {
			case netmon.AddrEvent:
				if ev.Op == addr.Op && ev.Addr.Prefix == addr.Addr.Prefix {
					addrAt = time.Now()
				}
			case netmon.RouteEvent:
				routeSeen = routeSeen || ev.Op == route.Op && ev.Route.Dst == route.Route.Dst
			}
		}
		return addrAt
	}
	var link uint32
	for {
		ev := next()
		if le, ok := ev.(netmon.LinkEvent); ok && le.Link.Name == "bench0" {
			link = uint32(le.Link.Index)
		}
		if _, ok := ev.(netmon.Synced); ok {
			break
		}
	}
	if link == 0 {
		b.Fatal("no link bench0 in the initial dump")
	}

	// The sender adds an address when asked and tells when it sent the
	// request.
	type sent struct {
		at  time.Time
		err error
	}
	requests, results := make(chan netip.Prefix), make(chan sent)
	go func() {
		for p := range requests {
			at := time.Now()
			_, err := c.Execute(addrRequest(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL, link, p))
			results <- sent{at, err}
		}
	}()
	defer close(requests)

	var samples []time.Duration
	i := 0
	for b.Loop() {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + i/250%100), byte(i % 250), 1}), 24)
		i++
		requests <- p
		addrAt := until(netmon.AddrEvent{Op: netmon.OpNew, Addr: netmon.Addr{Prefix: p}},
			netmon.RouteEvent{Op: netmon.OpNew, Route: netmon.Route{Dst: p.Masked()}})

		// Clean up outside the measurement: delete, and let the
		// monitor's route sweep after an IPv4 deletion finish.
		b.StopTimer()
		r := <-results
		if r.err != nil {
			b.Fatalf("adding %s: %v", p, r.err)
		}
		samples = append(samples, addrAt.Sub(r.at))
		if _, err := c.Execute(addrRequest(unix.RTM_DELADDR, 0, link, p)); err != nil {
			b.Fatalf("deleting %s: %v", p, err)
		}
		until(netmon.AddrEvent{Op: netmon.OpDel, Addr: netmon.Addr{Prefix: p}},
			netmon.RouteEvent{Op: netmon.OpDel, Route: netmon.Route{Dst: p.Masked()}})
		time.Sleep(time.Millisecond)
		b.StartTimer()
	}
	b.ReportMetric(quantile(samples, 0.5), "p50-µs")
	b.ReportMetric(quantile(samples, 0.9), "p90-µs")
}

// quantile returns the q-quantile of samples in microseconds.
func quantile(samples []time.Duration, q float64) float64 {
	s := slices.Sorted(slices.Values(samples))
	return float64(s[int(q*float64(len(s)-1))]) / float64(time.Microsecond)
}

// addrRequest is a RTM_NEWADDR or RTM_DELADDR request for p on a link.
func addrRequest(typ uint16, flags netlink.HeaderFlags, index uint32, p netip.Prefix) netlink.Message {
	ifa := make([]byte, unix.SizeofIfAddrmsg)
	ifa[0] = unix.AF_INET
	ifa[1] = byte(p.Bits())
	binary.NativeEndian.PutUint32(ifa[4:], index)
	ae := netlink.NewAttributeEncoder()
	ip := p.Addr().AsSlice()
	ae.Bytes(unix.IFA_LOCAL, ip)
	ae.Bytes(unix.IFA_ADDRESS, ip)
	attrs, err := ae.Encode()
	if err != nil {
		panic(err) // cannot fail for two byte attributes
	}
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: netlink.Request | netlink.Acknowledge | flags},
		Data:   append(ifa, attrs...),
	}
}
