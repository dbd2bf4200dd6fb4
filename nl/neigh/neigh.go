// Package neigh forgets the neighbour entries of a link that failed to
// resolve while the link had no carrier.
//
// The kernel flushes a link's neighbour entries when it loses its
// carrier, but not when it gets it back. What was sent in between (a
// subflow resending, an application's connect) made new entries whose
// address resolution could not work: INCOMPLETE, retrying once a second,
// then FAILED. When the carrier comes back, the first packets to such a
// neighbour, a gateway most likely, wait in the entry for its next
// retry, up to a second, and fail with it (EHOSTUNREACH) when that was
// its last: a new MPTCP subflow on a Wi-Fi link back in range fails
// that way. Deleting those entries makes the next packet resolve the
// neighbour at once.
package neigh

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Forgetter deletes unresolved neighbour entries in one namespace.
type Forgetter struct {
	h *netlink.Handle
}

// New returns a Forgetter for the namespace of the open file descriptor
// netnsFD; 0 is the caller's.
func New(netnsFD int) (*Forgetter, error) {
	var h *netlink.Handle
	var err error
	if netnsFD == 0 {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	} else {
		h, err = netlink.NewHandleAt(netns.NsHandle(netnsFD), unix.NETLINK_ROUTE)
	}
	if err != nil {
		return nil, fmt.Errorf("neigh: open rtnetlink: %w", err)
	}
	return &Forgetter{h: h}, nil
}

// Close releases the socket.
func (f *Forgetter) Close() { f.h.Close() }

// unresolved are the states of an entry whose resolution has not worked.
const unresolved = netlink.NUD_INCOMPLETE | netlink.NUD_FAILED

// ForgetUnresolved deletes the IPv4 and IPv6 neighbour entries of link
// index that are resolving (INCOMPLETE) or failed (FAILED), and returns
// how many went. Packets queued in an entry go with it; their sockets
// resend them. Entries that resolved, and static ones, stay.
func (f *Forgetter) ForgetUnresolved(index int) (int, error) {
	var errs []error
	n := 0
	for _, family := range []int{unix.AF_INET, unix.AF_INET6} {
		entries, err := f.h.NeighList(index, family)
		if err != nil {
			errs = append(errs, fmt.Errorf("neigh: list link %d's entries: %w", index, err))
			continue
		}
		for _, e := range entries {
			if e.State&unresolved == 0 || e.State&^unresolved != 0 || e.LinkIndex != index {
				continue
			}
			if err := f.h.NeighDel(&e); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("neigh: delete %s on link %d: %w", e.IP, index, err))
				continue
			}
			n++
		}
	}
	return n, errors.Join(errs...)
}
