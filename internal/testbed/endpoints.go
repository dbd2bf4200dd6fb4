package testbed

import (
	"fmt"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// SetLimits sets the namespace's in-kernel path manager limits: the
// extra subflows of a connection, and the ADD_ADDRs it accepts.
func (n *Namespace) SetLimits(subflows, accepted uint32) error {
	c, err := mptcp.Dial(&mptcp.Config{NetNS: n.FD()})
	if err != nil {
		return fmt.Errorf("testbed: limits in %s: %w", n, err)
	}
	defer c.Close()
	if err := c.SetLimits(mptcp.Limits{Subflows: &subflows, AddAddrAccepted: &accepted}); err != nil {
		return fmt.Errorf("testbed: limits in %s: %w", n, err)
	}
	return nil
}

// StaticEndpoints programs the laptop's in-kernel path manager the way a
// hand-written configuration would, with no daemon: one endpoint with
// flags (and the link's device) per link's current address, and a
// subflow limit that lets every link carry one. Nothing follows later
// events: after Renumber the endpoint names an address that is gone.
func (b *Testbed) StaticEndpoints(flags mptcp.Flags) error {
	c, err := mptcp.Dial(&mptcp.Config{NetNS: b.Laptop.FD()})
	if err != nil {
		return fmt.Errorf("testbed: static endpoints: %w", err)
	}
	defer c.Close()
	links, err := b.Laptop.Links()
	if err != nil {
		return err
	}
	index := map[string]int{}
	for _, l := range links {
		index[l.Name] = l.Index
	}
	// The initial subflow needs no endpoint's room; the kernel allows 8.
	n := uint32(min(len(b.Links), 8))
	if err := c.SetLimits(mptcp.Limits{Subflows: &n}); err != nil {
		return fmt.Errorf("testbed: static endpoints: limits: %w", err)
	}
	for _, l := range b.Links {
		e := mptcp.Endpoint{Addr: l.Addr(), Flags: flags, IfIndex: index[l.Name]}
		if err := c.AddEndpoint(e); err != nil {
			return fmt.Errorf("testbed: static endpoint %s dev %s: %w", e.Addr, l.Name, err)
		}
	}
	return nil
}
