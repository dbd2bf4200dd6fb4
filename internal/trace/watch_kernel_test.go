package trace

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
	"github.com/mptcpd-go/mptcpd/nl/netmon"
)

// TestWatchKernel: in a fresh namespace with an MPTCP connection over lo,
// Watch hands over rounds whose links, addresses and connections agree
// with their records, and an address added as a link event; it returns
// the error of a call as is, and nil once ctx has ended.
func TestWatchKernel(t *testing.T) {
	a, b := nstest.New(t), nstest.New(t)
	nstest.Veth(t, a, "v0", b, "v1")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	s, err := Start(ctx, Config{NetNS: a.Handle().FD(), Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mptcpConn(t, a)

	errSeen := errors.New("seen")
	prefix := netip.MustParsePrefix("10.9.0.1/24")
	var sawEvent, sawAddr, sawConn bool
	round := func(r Round) error {
		checkRound(t, r)
		v0 := slices.IndexFunc(r.Links, func(l netmon.Link) bool { return l.Name == "v0" })
		if v0 >= 0 && slices.ContainsFunc(r.Addrs, func(ad netmon.Addr) bool {
			return ad.LinkIndex == r.Links[v0].Index && ad.Prefix == prefix
		}) {
			sawAddr = true
		}
		for _, c := range r.Conns {
			sawConn = sawConn || !c.Listening() && len(c.Subflows) > 0
		}
		if sawEvent && sawAddr && sawConn {
			return errSeen
		}
		return nil
	}
	events := func(recs []Record) error {
		for _, rec := range recs {
			if rec.Kind != KindEvent {
				t.Errorf("link events handed over a %s record", rec.Kind)
			}
			sawEvent = sawEvent || rec.Event == EventAddrAdded && rec.Dev == "v0" && rec.Detail == prefix.String()
		}
		return nil
	}
	a.MustRun("ip", "addr", "add", prefix.String(), "dev", "v0")
	if err := s.Watch(ctx, round, events); !errors.Is(err, errSeen) {
		t.Fatalf("Watch returned %v; saw the addr-added event %v, v0's address %v, a connection with subflows %v",
			err, sawEvent, sawAddr, sawConn)
	}

	done, stop := context.WithCancel(ctx)
	stop()
	rounds := 0
	err = s.Watch(done, func(Round) error { rounds++; return nil }, func([]Record) error { return nil })
	if err != nil || rounds != 1 {
		t.Errorf("Watch with an ended context: %v after %d rounds, want nil after 1", err, rounds)
	}
}

// checkRound: every record is of the round's time and kinds, and every
// conn and subflow record is of a connection in r.Conns.
func checkRound(t *testing.T, r Round) {
	t.Helper()
	tokens := map[string]bool{}
	for _, c := range r.Conns {
		tokens[c.Info.Token.String()] = true
	}
	for _, rec := range r.Records {
		if !rec.Time.Equal(r.Time) || !rec.Kind.sample() {
			t.Errorf("round of %v has a %s record of %v", r.Time, rec.Kind, rec.Time)
		}
		if rec.Kind != KindLink && !tokens[rec.Token.String()] {
			t.Errorf("%s record of token %v, not in the round's connections", rec.Kind, rec.Token)
		}
	}
}

// mptcpConn opens an MPTCP connection over ns's lo, open until the test
// ends.
func mptcpConn(t *testing.T, ns *nstest.NS) {
	t.Helper()
	var lc net.ListenConfig
	lc.SetMultipathTCP(true)
	var d net.Dialer
	d.SetMultipathTCP(true)
	var l net.Listener
	var c net.Conn
	if err := ns.Handle().Do(func() (err error) {
		if l, err = lc.Listen(t.Context(), "tcp", "127.0.0.1:0"); err != nil {
			return err
		}
		c, err = d.DialContext(t.Context(), "tcp", l.Addr().String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); l.Close() })
	accepted, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { accepted.Close() })
	if _, err := c.Write([]byte("watch")); err != nil {
		t.Fatal(err)
	}
}
