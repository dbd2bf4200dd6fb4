package pm

import (
	"errors"
	"iter"
	"log/slog"
	"net/netip"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/policy"
)

// The userspace path manager's plugin API. With
// net.mptcp.path_manager=userspace the kernel opens no subflow and
// announces no address by itself: it reports every step of every
// connection as an mptcp_pm event and waits for commands. An engine
// (package pm/userspace) keeps the state of each connection, calls one
// Plugin's callbacks and carries out the Commands the plugin gives.
//
// The callbacks mirror the plugin operations of Intel's mptcpd. They are
// called one at a time, never concurrently, and Commands and State may be
// used only from within a callback. A callback should return quickly: the
// engine reads no event while it runs.

// Plugin decides the subflows and announcements of connections. Embed
// PluginBase to implement only the callbacks of interest.
type Plugin interface {
	// NewConnection: CREATED. The initial subflow is up but the
	// connection is not fully established yet: the kernel refuses
	// SUBFLOW_CREATE (ENOTCONN) until ConnectionEstablished.
	NewConnection(c Connection)
	// ConnectionEstablished: ESTABLISHED. Both ends have exchanged keys;
	// subflows may be created and addresses announced from now on.
	ConnectionEstablished(c Connection)
	// ConnectionClosed: CLOSED. Commands on c now fail; the engine
	// forgets c when the callback returns.
	ConnectionClosed(c Connection)

	// AddressAnnounced: ANNOUNCED, the peer sent ADD_ADDR. The userspace
	// PM does not join it by itself: call CreateSubflow for a subflow to
	// it.
	AddressAnnounced(c Connection, a PeerAddr)
	// AddressRemoved: REMOVED, the peer sent RM_ADDR. The kernel closes
	// the subflows to that address itself (SubflowClosed follows).
	AddressRemoved(c Connection, a PeerAddr)

	// SubflowEstablished: SUB_ESTABLISHED, a join completed, one that
	// CreateSubflow asked for or one the peer opened.
	SubflowEstablished(c Connection, s Subflow)
	// SubflowClosed: SUB_CLOSED, a subflow closed, or a join that
	// CreateSubflow asked for failed.
	SubflowClosed(c Connection, s Subflow)
	// SubflowPriority: SUB_PRIORITY, the peer changed the backup flag of
	// s with MP_PRIO. Changes asked for with SetBackup are not reported.
	SubflowPriority(c Connection, s Subflow)

	// ListenerCreated and ListenerClosed: LISTENER_CREATED and
	// LISTENER_CLOSED, an MPTCP socket started or stopped listening on
	// addr. The kernel accepts joins to an announced address only while
	// a listener covers it.
	ListenerCreated(addr netip.AddrPort)
	ListenerClosed(addr netip.AddrPort)

	// LinkAdded, LinkChanged and LinkRemoved report the namespace's
	// interfaces as the policy sees them (Link.Usable, Link.Kind). The
	// addresses of a link that becomes unusable are reported removed
	// first.
	LinkAdded(l Link)
	LinkChanged(l Link)
	LinkRemoved(l Link)

	// LocalAddressAdded, LocalAddressChanged and LocalAddressRemoved
	// report the usable local addresses (State.LocalAddrs): an address
	// is added when the policy starts to allow it (its link up, a rule
	// that does not ignore it, ...), changed when its flags, port or link
	// change, removed when it goes or the policy stops allowing it.
	LocalAddressAdded(a LocalAddr)
	LocalAddressChanged(a LocalAddr)
	LocalAddressRemoved(a LocalAddr)
}

// PluginBase implements every Plugin callback as a no-op.
type PluginBase struct{}

func (PluginBase) NewConnection(Connection)               {}
func (PluginBase) ConnectionEstablished(Connection)       {}
func (PluginBase) ConnectionClosed(Connection)            {}
func (PluginBase) AddressAnnounced(Connection, PeerAddr)  {}
func (PluginBase) AddressRemoved(Connection, PeerAddr)    {}
func (PluginBase) SubflowEstablished(Connection, Subflow) {}
func (PluginBase) SubflowClosed(Connection, Subflow)      {}
func (PluginBase) SubflowPriority(Connection, Subflow)    {}
func (PluginBase) ListenerCreated(netip.AddrPort)         {}
func (PluginBase) ListenerClosed(netip.AddrPort)          {}
func (PluginBase) LinkAdded(Link)                         {}
func (PluginBase) LinkChanged(Link)                       {}
func (PluginBase) LinkRemoved(Link)                       {}
func (PluginBase) LocalAddressAdded(LocalAddr)            {}
func (PluginBase) LocalAddressChanged(LocalAddr)          {}
func (PluginBase) LocalAddressRemoved(LocalAddr)          {}

var _ Plugin = PluginBase{}

// Connection is a read-only view of one MPTCP connection, valid during
// the callback it is passed to.
type Connection interface {
	Token() mptcp.Token
	// Local and Remote are the initial subflow's ends.
	Local() netip.AddrPort
	Remote() netip.AddrPort
	// IfIndex is the interface of Local's address, 0 when unknown.
	IfIndex() int
	// ServerSide reports whether this end accepted the connection.
	ServerSide() bool
	// Established reports whether ESTABLISHED was seen.
	Established() bool
	// PeerAddrs are the addresses the peer announced and has not
	// removed.
	PeerAddrs() iter.Seq[PeerAddr]
	// Subflows are the live subflows, the initial one first while it
	// lives, and those CreateSubflow asked for that are not established
	// yet (Subflow.Pending).
	Subflows() iter.Seq[Subflow]
	// Announced are the local addresses announced on c with Announce and
	// not removed since.
	Announced() iter.Seq[LocalAddr]
}

// Subflow is one subflow of a connection.
type Subflow struct {
	// Local's port is 0 while Pending: the kernel picks it.
	Local, Remote     netip.AddrPort
	LocalID, RemoteID mptcp.ID
	// IfIndex is the local interface: the one the kernel bound the
	// subflow to, else the link holding Local's address; 0 when unknown.
	IfIndex int
	Backup  bool
	// Pending: asked for with CreateSubflow, not established yet.
	Pending bool
}

// PeerAddr is an address the peer announced.
type PeerAddr struct {
	ID mptcp.ID
	// Addr's port is the announced one or, when the peer announced none,
	// the connection's remote port: Addr can be passed to CreateSubflow.
	Addr netip.AddrPort
}

// LocalAddr is a local address the policy lets connections use.
type LocalAddr struct {
	// ID is the address's id in the namespace, the same on every
	// connection while the address exists. (On a connection whose
	// initial subflow uses the address, subflows from it use id 0.)
	ID      mptcp.ID
	Addr    netip.Addr
	Port    uint16      // the rule's port (signal endpoints), 0 for none
	Flags   mptcp.Flags // the matching rule's flags
	IfIndex int
	Link    string
	Kind    policy.Kind
}

// Backup reports whether the policy makes subflows from a backup ones.
func (a LocalAddr) Backup() bool { return a.Flags&mptcp.FlagBackup != 0 }

// Commands act on connections; the engine implements them with the
// userspace PM's netlink commands. A failed command is logged with the
// token by the engine and returned, and never stops the engine. A command
// for a connection the engine no longer knows is not sent and returns an
// error that Is ErrNoConnection.
type Commands interface {
	// Announce sends ADD_ADDR for a on connection tok (ANNOUNCE, with
	// the address's namespace id, never 0). Joins to it are accepted
	// only while an MPTCP listener covers the address and port.
	Announce(tok mptcp.Token, a LocalAddr) error
	// Remove sends RM_ADDR for local address id (REMOVE); the kernel
	// then closes the subflows using it. The id must have been announced
	// or used by a subflow; 0 names the initial subflow's address.
	Remove(tok mptcp.Token, id mptcp.ID) error
	// CreateSubflow opens a subflow from local to remote
	// (SUBFLOW_CREATE), bound to local's interface and marked backup
	// when local is. The connection must be established. The subflow
	// shows in Connection.Subflows as Pending until it is established.
	CreateSubflow(tok mptcp.Token, local LocalAddr, remote netip.AddrPort) error
	// DestroySubflow closes s (SUBFLOW_DESTROY); s must not be Pending.
	DestroySubflow(tok mptcp.Token, s Subflow) error
	// SetBackup changes the backup flag of s and tells the peer (MP_PRIO
	// through SET_FLAGS).
	SetBackup(tok mptcp.Token, s Subflow, backup bool) error
}

// ErrNoConnection is matched by the error of a command for a connection
// that closed meanwhile.
var ErrNoConnection = errors.New("no such connection")

// State is what a plugin can read of the engine.
type State interface {
	// Connections lists the connections the engine knows.
	Connections() iter.Seq[Connection]
	// Connection returns one connection by token.
	Connection(tok mptcp.Token) (Connection, bool)
	// LocalAddrs lists the usable local addresses, by interface index,
	// then address.
	LocalAddrs() iter.Seq[LocalAddr]
	// Policy returns the policy the local addresses were chosen with.
	Policy() *policy.Policy
}

// Env is what a plugin's factory gets from the engine.
type Env struct {
	Log      *slog.Logger // labelled with the plugin's name
	Commands Commands
	State    State
}

// Factory makes a plugin for one engine. It is called once, before any
// callback.
type Factory func(env Env) (Plugin, error)

// FamiliesMatch reports whether the kernel accepts a subflow from local
// to remote on c (mptcp_pm_addr_families_match): on an IPv4 connection
// only IPv4 ones, on an IPv6 socket either family, the same at both ends.
func FamiliesMatch(c Connection, local, remote netip.Addr) bool {
	l4, r4 := local.Unmap().Is4(), remote.Unmap().Is4()
	if c.Local().Addr().Is4() {
		return l4 && r4
	}
	return l4 == r4
}

// UsableAddr returns the usable local address a, false when the policy
// does not allow it (any more).
func UsableAddr(st State, a netip.Addr) (LocalAddr, bool) {
	a = a.Unmap()
	for l := range st.LocalAddrs() {
		if l.Addr == a {
			return l, true
		}
	}
	return LocalAddr{}, false
}

// Withdraw stops using local address a on every connection: it removes
// a where it was announced (the kernel then closes the subflows using it
// and tells the peer), then destroys the subflows still using it.
func Withdraw(cmd Commands, st State, a LocalAddr) {
	for c := range st.Connections() {
		for an := range c.Announced() {
			if an.Addr == a.Addr {
				_ = cmd.Remove(c.Token(), an.ID) // the engine logs failures
				break
			}
		}
		for s := range c.Subflows() {
			if !s.Pending && s.Local.Addr().Unmap() == a.Addr {
				_ = cmd.DestroySubflow(c.Token(), s)
			}
		}
	}
}

// ApplyBackup makes every established subflow from local address a a
// backup subflow or not, as a.Backup says.
func ApplyBackup(cmd Commands, st State, a LocalAddr) {
	for c := range st.Connections() {
		for s := range c.Subflows() {
			if !s.Pending && s.Local.Addr().Unmap() == a.Addr && s.Backup != a.Backup() {
				_ = cmd.SetBackup(c.Token(), s, a.Backup())
			}
		}
	}
}
