// Package policy reads mptcpd.conf (Intel mptcpd's format, plus
// mptcpd-go's keys) and the per-interface policy file, validates them with
// the kernel's rules, and matches local addresses against the policy's
// rules. It is pure: no netlink, no privileges. The file formats are
// described in README.md.
package policy
