//go:build !linux

package intercept

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
)

var errUnsupported = fmt.Errorf("intercept: not supported on %s (needs Linux nftables)", runtime.GOOS)

// Install fails: interception needs Linux.
func Install(cfg Config) (*Rules, error) { return nil, errUnsupported }

// Remove fails: interception needs Linux.
func (r *Rules) Remove() error { return errUnsupported }

// OriginalDst fails: interception needs Linux.
func OriginalDst(c *net.TCPConn) (netip.AddrPort, error) { return netip.AddrPort{}, errUnsupported }
