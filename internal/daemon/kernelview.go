package daemon

import (
	"net/netip"
	"slices"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/pm"
)

// kernelView is the reconciler's Kernel, remembering what the kernel
// told it and what it wrote since: the endpoint table and limits as the
// last pass saw them, which status shows without asking the kernel. It
// is used from the engine loop only.
type kernelView struct {
	pm.Kernel
	table  []mptcp.Endpoint
	limits mptcp.Limits
}

func (k *kernelView) Endpoints() ([]mptcp.Endpoint, error) {
	eps, err := k.Kernel.Endpoints()
	if err == nil {
		k.table = slices.Clone(eps)
	}
	return eps, err
}

func (k *kernelView) AddEndpoint(e mptcp.Endpoint) error {
	err := k.Kernel.AddEndpoint(e)
	if err == nil {
		k.table = append(k.table, e)
	}
	return err
}

func (k *kernelView) DeleteEndpoint(id mptcp.ID, addr netip.Addr) error {
	err := k.Kernel.DeleteEndpoint(id, addr)
	if err == nil {
		k.table = slices.DeleteFunc(k.table, func(e mptcp.Endpoint) bool {
			return id != 0 && e.ID == id || id == 0 && e.Addr == addr
		})
	}
	return err
}

func (k *kernelView) SetEndpointFlags(e mptcp.Endpoint) error {
	err := k.Kernel.SetEndpointFlags(e)
	if err == nil {
		for i := range k.table {
			if k.table[i].ID == e.ID {
				k.table[i].Flags = e.Flags
			}
		}
	}
	return err
}

func (k *kernelView) Limits() (mptcp.Limits, error) {
	l, err := k.Kernel.Limits()
	if err == nil {
		k.limits = l
	}
	return l, err
}

func (k *kernelView) SetLimits(l mptcp.Limits) error {
	err := k.Kernel.SetLimits(l)
	if err == nil {
		if l.Subflows != nil {
			k.limits.Subflows = l.Subflows
		}
		if l.AddAddrAccepted != nil {
			k.limits.AddAddrAccepted = l.AddAddrAccepted
		}
	}
	return err
}

// snapshot returns copies of the table and limits.
func (k *kernelView) snapshot() ([]mptcp.Endpoint, mptcp.Limits) {
	return slices.Clone(k.table), k.limits
}
