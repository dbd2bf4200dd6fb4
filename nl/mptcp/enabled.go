package mptcp

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/mptcpd-go/mptcpd/nl/netns"
)

// sysctlEnabled is net.mptcp.enabled. /proc/sys/net shows the values of the
// namespace of the thread that opens the file.
const sysctlEnabled = "/proc/sys/net/mptcp/enabled"

// CheckEnabled reports whether new sockets in cfg's namespace can use MPTCP:
// nil, or an error that Is ErrNotSupported and names what is missing, MPTCP
// not built into the kernel or net.mptcp.enabled=0 in that namespace. The
// netlink API works either way; a disabled namespace makes applications
// fall back to plain TCP without a word, which is worth telling a user.
func CheckEnabled(cfg *Config) error {
	var fd int
	if cfg != nil {
		fd = cfg.NetNS
	}
	var val []byte
	err := netns.DoFD(fd, func() error {
		var err error
		val, err = os.ReadFile(sysctlEnabled)
		return err
	})
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("mptcp: kernel built without MPTCP (CONFIG_MPTCP): %w", ErrNotSupported)
	case err != nil:
		return fmt.Errorf("mptcp: reading net.mptcp.enabled: %w", err)
	}
	return parseEnabled(val)
}

// parseEnabled interprets the sysctl's text ("0\n" or "1\n").
func parseEnabled(val []byte) error {
	switch v := string(bytes.TrimSpace(val)); v {
	case "1":
		return nil
	case "0":
		return fmt.Errorf("mptcp: MPTCP is disabled in this network namespace (sysctl net.mptcp.enabled=0): %w", ErrNotSupported)
	default:
		return fmt.Errorf("mptcp: unexpected net.mptcp.enabled value %q", v)
	}
}

// Path manager sysctls: net.mptcp.path_manager (Linux 6.15+, a name) and
// the older net.mptcp.pm_type (0 in-kernel, 1 userspace).
const (
	sysctlPathManager = "/proc/sys/net/mptcp/path_manager"
	sysctlPMType      = "/proc/sys/net/mptcp/pm_type"
)

// PathManager returns the path manager new connections in cfg's namespace
// get: "kernel" or "userspace" (or whatever newer name the kernel reports).
func PathManager(cfg *Config) (string, error) {
	var fd int
	if cfg != nil {
		fd = cfg.NetNS
	}
	var name string
	err := netns.DoFD(fd, func() error {
		val, err := os.ReadFile(sysctlPathManager)
		if err == nil {
			name = string(bytes.TrimSpace(val))
			return nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		val, err = os.ReadFile(sysctlPMType)
		if err != nil {
			return err
		}
		name, err = pmTypeName(val)
		return err
	})
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("mptcp: kernel built without MPTCP (CONFIG_MPTCP): %w", ErrNotSupported)
	case err != nil:
		return "", fmt.Errorf("mptcp: reading the path manager sysctl: %w", err)
	}
	return name, nil
}

// SetPathManager sets the path manager that new connections in cfg's
// namespace get: name is "kernel" or "userspace". Kernels before 6.15
// have only net.mptcp.pm_type (0 or 1), which is written instead.
// Connections that exist keep theirs.
func SetPathManager(cfg *Config, name string) error {
	var fd int
	if cfg != nil {
		fd = cfg.NetNS
	}
	var pmType string
	switch name {
	case "kernel":
		pmType = "0"
	case "userspace":
		pmType = "1"
	default:
		return fmt.Errorf("mptcp: unknown path manager %q (want kernel or userspace)", name)
	}
	err := netns.DoFD(fd, func() error {
		err := os.WriteFile(sysctlPathManager, []byte(name), 0)
		if errors.Is(err, os.ErrNotExist) {
			err = os.WriteFile(sysctlPMType, []byte(pmType), 0)
		}
		return err
	})
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("mptcp: kernel built without MPTCP (CONFIG_MPTCP): %w", ErrNotSupported)
	case err != nil:
		return fmt.Errorf("mptcp: setting the path manager sysctl to %s: %w", name, err)
	}
	return nil
}

// pmTypeName maps net.mptcp.pm_type's value onto path_manager's names.
func pmTypeName(val []byte) (string, error) {
	switch v := string(bytes.TrimSpace(val)); v {
	case "0":
		return "kernel", nil
	case "1":
		return "userspace", nil
	default:
		return "", fmt.Errorf("unexpected net.mptcp.pm_type value %q", v)
	}
}
