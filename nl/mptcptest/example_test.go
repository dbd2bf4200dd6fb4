package mptcptest_test

import (
	"fmt"
	"net/netip"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcptest"
)

// A reconciler test: seed the table, then check that a pass which finds
// everything in place changes nothing.
func Example() {
	k := mptcptest.NewKernel()
	c, err := k.Dial()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	e := mptcp.Endpoint{Addr: netip.MustParseAddr("192.0.2.1"), Flags: mptcp.FlagSubflow}
	if err := c.AddEndpoint(e); err != nil {
		fmt.Println(err)
		return
	}
	k.ResetOps()

	// The code under test would run here; this one re-adds the endpoint.
	err = c.AddEndpoint(e)
	fmt.Println(err)
	for _, op := range k.Ops() {
		fmt.Println(op)
	}
	fmt.Println(k.Endpoints())
	// Output:
	// mptcp: add endpoint: file exists: too many addresses or duplicate one: -17
	// ADD_ADDR 192.0.2.1 id 0 subflow: EEXIST
	// [{1 192.0.2.1 0 subflow 0}]
}

// Events reach every listener; a lost-events condition is reported first.
func ExampleKernel_Inject() {
	k := mptcptest.NewKernel()
	l, err := k.ListenEvents()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()

	k.Inject(mptcp.Event{
		Type:  mptcp.EventCreated,
		Token: 0x7ab06eec,
		Saddr: netip.MustParseAddr("10.1.1.2"), Sport: 51482,
		Daddr: netip.MustParseAddr("10.1.1.1"), Dport: 5000,
	})
	k.LoseEvents()

	_, err = l.Receive()
	fmt.Println(err)
	evs, _ := l.Receive()
	ev := evs[0]
	fmt.Println(ev.Type, ev.Token, ev.Saddr, ev.Sport, ev.Has(mptcp.AttrServerSide))
	// Output:
	// mptcp: receive events: no buffer space available
	// CREATED 7ab06eec 10.1.1.2 51482 false
}
