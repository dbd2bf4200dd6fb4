// Package integration holds the tests that need root and a real kernel
// with MPTCP: each creates its own network namespaces and veth links
// (internal/nstest), never touches the host namespace, bounds its time and
// cleans up, and skips when not run as root. TestMain builds the project's
// binaries (mptcpctl, the mptcpecho helper) once for the whole package.
package integration
