package control

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/pm"
)

// The daemon's two modes, as Status.Mode and Explain.Mode spell them.
const (
	ModeInKernel  = "in-kernel"
	ModeUserspace = "userspace"
)

// Status is the reply to "status": the daemon as its last pass left it.
type Status struct {
	Version   string    `json:"version"`
	PID       int       `json:"pid"`
	Started   time.Time `json:"started"`
	Mode      string    `json:"mode"`             // ModeInKernel or ModeUserspace
	Plugin    string    `json:"plugin,omitempty"` // the userspace mode's plugin
	Config    string    `json:"config"`           // the mptcpd.conf read, or "built-in"
	Policy    string    `json:"policy"`           // the policy file, or "built-in"
	StateFile string    `json:"state_file,omitempty"`
	Socket    string    `json:"socket"`
	// LastPass is when the last pass ended: zero while the daemon waits
	// for the first complete network state.
	LastPass time.Time `json:"last_pass"`
	Links    []Link    `json:"links"`
	// Endpoints are the endpoints the policy wants (in the userspace
	// mode: the usable local addresses), by link, then address.
	Endpoints []Wanted   `json:"endpoints"`
	Kernel    *Kernel    `json:"kernel"`    // in-kernel mode; null in the userspace one
	Userspace *Userspace `json:"userspace"` // userspace mode; null in the in-kernel one
	Problems  []Problem  `json:"problems"`  // the latest warnings and errors, oldest first
	Counters  Counters   `json:"counters"`
}

// Link is one interface as the policy sees it.
type Link struct {
	Index         int    `json:"index"`
	Name          string `json:"name"`
	Kind          string `json:"kind"` // the policy's word: ethernet, wifi, wwan, ...
	Usable        bool   `json:"usable"`
	Why           string `json:"why,omitempty"` // why not usable
	DefaultRoute4 bool   `json:"default_route_ipv4"`
	DefaultRoute6 bool   `json:"default_route_ipv6"`
	// Health is the path health verdict of a link with endpoints, when
	// the daemon judges paths (the in-kernel mode with path-health on).
	Health *Health `json:"health,omitempty"`
}

// Health is a path's verdict (pm/health).
type Health struct {
	State string    `json:"state"` // healthy, failed or probation
	Why   string    `json:"why"`
	Since time.Time `json:"since"`
	Until time.Time `json:"until,omitzero"` // failed: when the endpoints come back on probation
}

// LinkFrom is l on the wire.
func LinkFrom(l pm.Link) Link {
	return Link{Index: l.Index, Name: l.Name, Kind: l.Kind.String(), Usable: l.Usable, Why: l.Why,
		DefaultRoute4: l.DefaultRoute4, DefaultRoute6: l.DefaultRoute6}
}

// Endpoint is a kernel endpoint, or one the policy wants (ID 0).
type Endpoint struct {
	ID      mptcp.ID   `json:"id,omitempty"`
	Address netip.Addr `json:"address"`
	Port    uint16     `json:"port,omitempty"`
	Flags   []string   `json:"flags"` // mptcp.Flags.Names: signal, subflow, backup, ...
	Dev     string     `json:"dev,omitempty"`
	IfIndex int        `json:"ifindex,omitempty"`
}

// EndpointFrom is e on the wire; dev names e.IfIndex.
func EndpointFrom(e mptcp.Endpoint, dev string) Endpoint {
	flags := e.Flags.Names()
	if flags == nil {
		flags = []string{}
	}
	return Endpoint{ID: e.ID, Address: e.Addr, Port: e.Port, Flags: flags, Dev: dev, IfIndex: e.IfIndex}
}

// Kernel is e back as the kernel's type.
func (e Endpoint) Kernel() (mptcp.Endpoint, error) {
	out := mptcp.Endpoint{ID: e.ID, Addr: e.Address, Port: e.Port, IfIndex: e.IfIndex}
	for _, name := range e.Flags {
		f, ok := mptcp.ParseFlag(name)
		if !ok {
			return mptcp.Endpoint{}, fmt.Errorf("control: endpoint %s: unknown flag %q", e.Address, name)
		}
		out.Flags |= f
	}
	return out, nil
}

// Wanted is an endpoint the policy wants and what the kernel has of it.
type Wanted struct {
	Endpoint
	// Kernel is "present" (ID is the kernel's), "missing", "differs"
	// (the daemon's endpoint on the address has other flags, port or
	// device: the next pass fixes it), "held" (a foreign endpoint has
	// the address and is left alone); "" in the userspace mode.
	Kernel string `json:"kernel,omitempty"`
}

// Kernel is the in-kernel path manager's table and limits as the last
// pass saw them (a pass for a network event does not dump the table
// again: it is the last dump with the daemon's writes since applied).
type Kernel struct {
	Owned   []Endpoint `json:"owned"`   // made or adopted by the daemon
	Foreign []Endpoint `json:"foreign"` // made by someone else: left alone
	// Kept are the ids of owned endpoints kept through an outage, until
	// new subflows carry their connections (mptcpd(8)).
	Kept []int `json:"kept"`
	// InDoubt are endpoints deleted just before an outage, whose removal
	// the daemon will announce again once new subflows are up.
	InDoubt []Endpoint `json:"in_doubt"`
	Limits  Limits     `json:"limits"` // as last read or written
	// WantedLimits are the limits the policy manages; null: left alone.
	WantedLimits Limits `json:"wanted_limits"`
	// AdminLimits are managed limits an administrator changed, which the
	// daemon leaves alone ("subflows", "add_addr_accepted").
	AdminLimits []string `json:"admin_limits"`
}

// Limits are the in-kernel path manager's limits; null: unknown, or not
// managed.
type Limits struct {
	Subflows        *uint32 `json:"subflows"`
	AddAddrAccepted *uint32 `json:"add_addr_accepted"`
}

// LimitsFrom is l on the wire.
func LimitsFrom(l mptcp.Limits) Limits {
	return Limits{Subflows: l.Subflows, AddAddrAccepted: l.AddAddrAccepted}
}

// Kernel is l back as the kernel's type.
func (l Limits) Kernel() mptcp.Limits {
	return mptcp.Limits{Subflows: l.Subflows, AddAddrAccepted: l.AddAddrAccepted}
}

// Userspace are the userspace mode's counters.
type Userspace struct {
	Connections   int    `json:"connections"` // in the table now
	Events        uint64 `json:"events"`      // mptcp_pm events handled
	EventsLost    uint64 `json:"events_lost"` // times the kernel dropped events
	Resyncs       uint64 `json:"resyncs"`     // table rebuilds from the kernel's list
	CommandErrors uint64 `json:"command_errors"`
}

// Problem is one warning or error the daemon logged.
type Problem struct {
	Time    time.Time `json:"time"`
	Level   string    `json:"level"` // "WARN" or "ERROR"
	Message string    `json:"message"`
}

// Counters count the engine loop's work since the start.
type Counters struct {
	Passes  uint64 `json:"passes"`  // reconcile passes run
	Resyncs uint64 `json:"resyncs"` // full re-reads: periodic, or after lost network events
	Retries uint64 `json:"retries"` // passes to retry failed writes
	Reloads uint64 `json:"reloads"` // configuration reloads, failed ones included
}

// Connections is the reply to "connections": what the daemon knows of
// the namespace's MPTCP connections, to set beside the kernel's own list.
type Connections struct {
	Mode   string `json:"mode"`
	Plugin string `json:"plugin,omitempty"`
	// Owned are the endpoints the daemon made (in-kernel mode): a subflow
	// whose local id is one of theirs uses the daemon's endpoint.
	Owned []Endpoint `json:"owned"`
	// Connections are the userspace mode's table, by token.
	Connections []Connection `json:"connections"`
}

// Connection is one connection of the userspace mode's table.
type Connection struct {
	Token       string         `json:"token"` // as mptcp.Token prints it
	Local       netip.AddrPort `json:"local"`
	Remote      netip.AddrPort `json:"remote"`
	ServerSide  bool           `json:"server_side"`
	Established bool           `json:"established"`
	PeerAddrs   []PeerAddr     `json:"peer_addresses"` // announced by the peer
	Subflows    []Subflow      `json:"subflows"`
	Announced   []Endpoint     `json:"announced"` // announced by the plugin
	// Commands are the latest commands the plugin sent for this
	// connection, oldest first.
	Commands []Command `json:"commands"`
}

// ParseToken reads a token as mptcp.Token prints it.
func ParseToken(s string) (mptcp.Token, error) {
	v, err := strconv.ParseUint(s, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("control: token %q: %w", s, err)
	}
	return mptcp.Token(v), nil
}

// PeerAddr is an address the peer announced.
type PeerAddr struct {
	ID      mptcp.ID       `json:"id"`
	Address netip.AddrPort `json:"address"`
}

// Subflow is one subflow in the userspace mode's table.
type Subflow struct {
	Local    netip.AddrPort `json:"local"` // port 0 while pending
	Remote   netip.AddrPort `json:"remote"`
	LocalID  mptcp.ID       `json:"local_id"`
	RemoteID mptcp.ID       `json:"remote_id"`
	IfIndex  int            `json:"ifindex"`
	Backup   bool           `json:"backup"`
	Pending  bool           `json:"pending"` // asked for, not established yet
}

// SubflowFrom is s on the wire.
func SubflowFrom(s pm.Subflow) Subflow {
	return Subflow{Local: s.Local, Remote: s.Remote, LocalID: s.LocalID, RemoteID: s.RemoteID,
		IfIndex: s.IfIndex, Backup: s.Backup, Pending: s.Pending}
}

// Command ops, as Command.Op spells them.
const (
	OpAnnounce       = "announce"
	OpRemove         = "remove"
	OpCreateSubflow  = "create subflow"
	OpDestroySubflow = "destroy subflow"
	OpSetBackup      = "set backup"
	OpClearBackup    = "clear backup"
)

// Command is one userspace PM command a plugin sent.
type Command struct {
	Time   time.Time      `json:"time"`
	Op     string         `json:"op"`              // one of the Op constants
	ID     mptcp.ID       `json:"id,omitempty"`    // announce, remove, create subflow
	Local  netip.AddrPort `json:"local,omitzero"`  // the local address (port 0: the kernel's choice)
	Remote netip.AddrPort `json:"remote,omitzero"` // subflow commands
	Error  string         `json:"error,omitempty"` // the kernel refused
}

// String is the command in words: "create subflow id 2 10.0.2.2 ->
// 10.0.1.1:5000", with " failed: ERROR" when the kernel refused it.
func (c Command) String() string {
	s := c.Op
	if c.ID != 0 || c.Op == OpAnnounce || c.Op == OpRemove {
		s += fmt.Sprintf(" id %d", c.ID)
	}
	if c.Local.IsValid() {
		if c.Local.Port() == 0 {
			s += " " + c.Local.Addr().String()
		} else {
			s += " " + c.Local.String()
		}
	}
	if c.Remote.IsValid() {
		s += " -> " + c.Remote.String()
	}
	if c.Error != "" {
		s += " failed: " + c.Error
	}
	return s
}

// Event kinds, as Event.Kind spells them.
const (
	KindLink     = "link"     // netmon: a link appeared, changed or went (Op new/del)
	KindAddr     = "addr"     // netmon: an address
	KindRoute    = "route"    // netmon: a route
	KindResync   = "resync"   // netmon: network events were lost, everything is read again
	KindSynced   = "synced"   // netmon: the state is complete again
	KindEndpoint = "endpoint" // the daemon wrote the endpoint table (Op added, deleted, flags, adopted)
	KindLimits   = "limits"   // the daemon set the limits
	KindMPTCP    = "mptcp"    // userspace mode: an mptcp_pm event (Op is its name)
	KindCommand  = "command"  // userspace mode: a plugin's command (Op is Command.Op)
	KindReload   = "reload"   // a configuration reload (Op ok/failed)
	KindHealth   = "health"   // a path health verdict changed (Op healthy, failed, probation)
)

// Event is one line of the "events" stream.
type Event struct {
	Seq     uint64    `json:"seq"` // consecutive for as long as the client watches
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Op      string    `json:"op,omitempty"`
	Link    string    `json:"link,omitempty"`
	Address string    `json:"address,omitempty"`
	Token   string    `json:"token,omitempty"`
	Text    string    `json:"text"` // the whole event in words, one line
}

// Reloaded is the reply to a "reload" that worked; one that did not gets
// an error reply with the reason.
type Reloaded struct {
	Config string `json:"config"`
	Policy string `json:"policy"`
}
