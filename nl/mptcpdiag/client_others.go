//go:build !linux

package mptcpdiag

import (
	"fmt"
	"runtime"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// client is the stub of systems without sock_diag.
type client struct{}

func newClient(*Config) (*client, error) {
	return nil, fmt.Errorf("mptcpdiag: not supported on %s: %w", runtime.GOOS, mptcp.ErrNotSupported)
}

func (*client) Close() error { return nil }

func (*client) connections(bool, States) ([]Connection, error) {
	return nil, fmt.Errorf("mptcpdiag: not supported on %s: %w", runtime.GOOS, mptcp.ErrNotSupported)
}

func (*client) destroy(Subflow) error {
	return fmt.Errorf("mptcpdiag: not supported on %s: %w", runtime.GOOS, mptcp.ErrNotSupported)
}
