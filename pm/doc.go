// Package pm is the path manager's core: it turns the namespace's network
// state and the policy into the in-kernel path manager's endpoints and
// limits, and applies the difference.
//
// The set of endpoints the daemon owns is always a pure function of
// (network state, policy): NetworkFrom reduces a netmon.State to what
// matters (usable links, their kinds and default routes, their
// addresses), Desired computes the Plan without side effects, and a
// Reconciler makes the kernel match the Plan with the fewest writes,
// never touching endpoints it does not own. Ownership survives restarts
// in a Store, written ahead of every endpoint the daemon creates.
//
// In the kernel's userspace path-manager mode, the subflows of each
// connection are decided by a Plugin instead: plugins register by name
// (Register, from their package's init; pm/plugins/all imports them all),
// receive callbacks modelled on Intel mptcpd's plugin operations, see the
// policy's usable local addresses, and act through Commands. Package
// pm/userspace runs them over the kernel's events.
//
// Nothing here speaks netlink: the kernel is reached through the Kernel
// interface, which *mptcp.Client satisfies and nl/mptcptest fakes.
package pm
