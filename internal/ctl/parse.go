package ctl

import (
	"fmt"
	"net/netip"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// endpointOp is the endpoint subcommand whose arguments are parsed; like
// the cmd argument of ip's mptcp_parse_opt it decides which checks apply.
type endpointOp int

const (
	opAdd endpointOp = iota
	opChange
	opDelete
	opShow
)

// endpointArgs are the parsed arguments of an endpoint subcommand.
type endpointArgs struct {
	ID      mptcp.ID
	IDSet   bool
	Addr    netip.Addr // invalid when not given
	Port    uint16
	Flags   mptcp.Flags
	IfIndex int
}

// endpoint is the endpoint the arguments describe.
func (a endpointArgs) endpoint() mptcp.Endpoint {
	return mptcp.Endpoint{ID: a.ID, Addr: a.Addr, Port: a.Port, Flags: a.Flags, IfIndex: a.IfIndex}
}

// flagWords are the flag words accepted on input, matched exactly (not by
// prefix), as ip's get_flags does. "nobackup" and "nofullmesh" add nothing:
// `change` sends the complete backup/fullmesh state, so leaving a flag out
// clears it. "laminar" (Linux 6.18) is not known to ip 6.1.
var flagWords = []struct {
	word string
	flag mptcp.Flags
}{
	{"signal", mptcp.FlagSignal},
	{"subflow", mptcp.FlagSubflow},
	{"backup", mptcp.FlagBackup},
	{"fullmesh", mptcp.FlagFullmesh},
	{"laminar", mptcp.FlagLaminar},
	{"nobackup", 0},
	{"nofullmesh", 0},
}

func lookupFlagWord(w string) (mptcp.Flags, bool) {
	for _, fw := range flagWords {
		if fw.word == w {
			return fw.flag, true
		}
	}
	return 0, false
}

// LinkIndexer resolves interface names in the target namespace.
type LinkIndexer interface {
	// LinkIndex returns the index of the link named name (or with that
	// alternative name), or 0 when there is none.
	LinkIndex(name string) int
}

// argCursor walks the words of a command line.
type argCursor struct {
	args []string
	i    int
}

func (c *argCursor) more() bool   { return c.i < len(c.args) }
func (c *argCursor) word() string { return c.args[c.i] }

// value steps to the value of the current keyword (ip's NEXT_ARG).
func (c *argCursor) value() (string, error) {
	kw := c.args[c.i]
	c.i++
	if c.i >= len(c.args) {
		return "", incompleteError(kw)
	}
	return c.args[c.i], nil
}

// idValue reads the value of an "id" keyword (ip's get_u8).
func idValue(c *argCursor) (mptcp.ID, error) {
	v, err := c.value()
	if err != nil {
		return 0, err
	}
	id, ok := getUnsigned(v, 0xff)
	if !ok {
		return 0, invalidArgError("invalid ID", v)
	}
	return mptcp.ID(id), nil
}

// portValue reads the value of a "port" keyword (ip's get_u16).
func portValue(c *argCursor) (uint16, error) {
	v, err := c.value()
	if err != nil {
		return 0, err
	}
	port, ok := getUnsigned(v, 0xffff)
	if !ok {
		return 0, invalidArgError("expected port", v)
	}
	return uint16(port), nil
}

// devValue reads the value of a "dev" keyword and resolves it in the
// namespace (ip's ll_name_to_index, "if%u" as a last resort). links may be
// nil when no name needs resolving; a name then fails.
func devValue(c *argCursor, links LinkIndexer) (int, error) {
	v, err := c.value()
	if err != nil {
		return 0, err
	}
	if !checkIfname(v) {
		return 0, invalidArgError("invalid interface name", v)
	}
	idx := 0
	if links != nil {
		idx = links.LinkIndex(v)
	}
	if idx == 0 {
		// The kernel stores IF_IDX as s32; ip sends the u32 as is.
		idx = int(int32(ifIndexFromName(v)))
	}
	if idx == 0 {
		return 0, invalidArgError("device does not exist", v)
	}
	return idx, nil
}

// parseEndpointArgs parses `endpoint add|change|delete|show` arguments with
// ip 6.1's rules (ip/ipmptcp.c mptcp_parse_opt): flag words exactly, then
// the keywords id, dev, port by prefix ("i", "d", "p" ...), then any other
// word must be an address. Repeated keywords override, flags accumulate.
// links may be nil when no name needs resolving; a "dev" word then fails.
func parseEndpointArgs(op endpointOp, args []string, links LinkIndexer) (endpointArgs, error) {
	var a endpointArgs
	for c := (&argCursor{args: args}); c.more(); c.i++ {
		w := c.word()
		if f, ok := lookupFlagWord(w); ok {
			a.Flags |= f
			if op == opAdd && a.Flags&mptcp.FlagSignal != 0 && a.Flags&mptcp.FlagFullmesh != 0 {
				return a, invalidArgError("flags mustn't have both signal and fullmesh", w)
			}
			// change can only set backup and fullmesh.
			if op == opChange && a.Flags&^(mptcp.FlagBackup|mptcp.FlagFullmesh) != 0 {
				return a, invalidArgError("invalid flags, backup and fullmesh only", w)
			}
			continue
		}
		switch {
		case matches(w, "id"):
			id, err := idValue(c)
			if err != nil {
				return a, err
			}
			a.ID, a.IDSet = id, true
		case matches(w, "dev"):
			idx, err := devValue(c, links)
			if err != nil {
				return a, err
			}
			a.IfIndex = idx
		case matches(w, "port"):
			port, err := portValue(c)
			if err != nil {
				return a, err
			}
			a.Port = port
		default:
			addr, kind := parseAddress(w)
			switch kind {
			case addrInvalid:
				return a, notAddressError(w)
			case addrUnspecified:
				// ip sends these as an address of no family, which the
				// kernel refuses; say so before sending anything.
				return a, &ExitError{Code: ExitFailure, Msg: fmt.Sprintf("Error: %q names no address: an IPv4 or IPv6 address is expected.", w)}
			}
			a.Addr = addr
		}
	}

	if op == opAdd && !a.Addr.IsValid() {
		return a, missingArgError("ADDRESS")
	}
	if op == opDelete {
		switch {
		case !a.IDSet:
			return a, missingArgError("ID")
		case a.ID != 0 && a.Addr.IsValid():
			return a, invalidArgError("invalid for non-zero id address", "ADDRESS")
		case a.ID == 0 && !a.Addr.IsValid():
			return a, invalidArgError("address is needed for deleting id 0 address", "ID")
		}
	}
	if op == opAdd && a.Port != 0 && a.Flags&mptcp.FlagSignal == 0 {
		return a, invalidArgError("flags must have signal when using port", "port")
	}
	if op == opChange && a.IDSet && a.Port != 0 {
		return a, invalidArgError("port can't be used with id", "port")
	}
	if op == opChange && a.ID == 0 && !a.Addr.IsValid() {
		// ip sends this and the kernel refuses it ("missing address
		// ID", exit 2); refuse it before sending, with ip's status.
		return a, &ExitError{Code: ExitKernel, Msg: "Error: missing address ID: change needs id ID (not 0) or ADDRESS."}
	}
	return a, nil
}

// parseLimits parses `limits set|show` arguments (ip's mptcp_parse_limit):
// subflows and add_addr_accepted by prefix, each with a u32.
func parseLimits(args []string) (mptcp.Limits, error) {
	var l mptcp.Limits
	for c := (&argCursor{args: args}); c.more(); c.i++ {
		w := c.word()
		var (
			field **uint32
			name  string
		)
		switch {
		case matches(w, "subflows"):
			field, name = &l.Subflows, "subflows"
		case matches(w, "add_addr_accepted"):
			field, name = &l.AddAddrAccepted, "add_addr_accepted"
		default:
			return l, invalidArgError("unknown limit", w)
		}
		v, err := c.value()
		if err != nil {
			return l, err
		}
		n, ok := getUnsigned(v, 0xffffffff)
		if !ok {
			return l, invalidArgError("invalid "+name, v)
		}
		n32 := uint32(n)
		*field = &n32
	}
	return l, nil
}
