// Package mptcptest is a stateful in-memory fake of the kernel's mptcp_pm
// generic netlink family (one network namespace's path-manager state), so
// that code above nl/mptcp can be tested without root against the real
// client.
//
// A Kernel speaks netlink bytes: Dial and ListenEvents hand out the real
// *mptcp.Client and *mptcp.EventListener wired to in-memory sockets, and
// every request is decoded, checked and answered the way Linux 6.18 does
// (net/mptcp/pm_netlink.c, pm_kernel.c, pm_userspace.c). Replies, acks,
// dumps and errors have the kernel's exact shape, including the
// extended-ack text and attribute offsets, so CLI tests see what `ip
// mptcp` users see. The differential test in integration/
// (TestFakeVsKernel*) checks the fake against a real kernel.
//
// Modelled:
//
//   - the in-kernel endpoint table: at most 8 endpoints (ERANGE); id
//     allocation from next_id with wrap-around and reuse after deletes;
//     EBUSY for a used id, EEXIST for a duplicate address (and port);
//     the flag rules (port only with signal and not subflow, no
//     signal+fullmesh, no implicit); implicit endpoints and their
//     replacement; dumps ordered by id; unknown flag bits dropped
//   - signal endpoints with a port open a listening socket first: the
//     address must be local (see SetLocalAddrs; EADDRNOTAVAIL otherwise),
//     the address and port free (EADDRINUSE), and LISTENER_CREATED /
//     LISTENER_CLOSED events are sent as the kernel does
//   - limits (defaults subflows 2, add_addr_accepted 0; at most 8)
//   - SET_FLAGS by id or by address, changing only backup and fullmesh
//   - the userspace PM commands (ANNOUNCE, REMOVE, SUBFLOW_CREATE,
//     SUBFLOW_DESTROY, SET_FLAGS and GET_ADDR with a token) on connections
//     registered with AddConnection or by injected CREATED events
//   - the event group: Inject delivers events to every listener; a full
//     receive buffer or LoseEvents makes listeners see ENOBUFS
//
// Not modelled: what the in-kernel PM does on live connections (opening or
// closing subflows when endpoints change, MP_PRIO, ADD_ADDR on the wire),
// timers, and sockets other than the fake's own listeners (a port taken by
// another program is not detected).
package mptcptest
