package mptcptest

import (
	"slices"
	"syscall"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// Request dispatch: what net/netlink/genetlink.c and af_netlink.c do
// between the socket and the mptcp_pm handlers.

// The fake's generic netlink ids. They differ from what a typical kernel
// assigns so that code which hard-codes ids fails against the fake.
const (
	familyID    = 42
	groupCmds   = 11
	groupEvents = 12

	nlctrlVersion = 2 // the nlctrl family's version
	nlmsgMinType  = 0x10
)

// request is one decoded mptcp_pm request: the attributes of the
// command's policy.
type request struct {
	attrs map[uint16]attr
}

// attrKind is an entry of a command's nla_policy.
type attrKind uint8

const (
	kindU8 attrKind = iota + 1
	kindU32
	kindAddrNest
)

// command is one entry of mptcp_pm_nl_ops (mptcp_pm_gen.c).
type command struct {
	name   string
	policy map[uint16]attrKind
	// do answers with attributes (reply) or nothing but an ack (reply nil).
	do     func(k *Kernel, r *request) (reply []byte, err *kerr)
	dump   func(k *Kernel, r *request) (entries [][]byte, err *kerr)
	mutate bool // logged in Ops
}

var (
	policyAddr   = map[uint16]attrKind{mptcp.MPTCP_PM_ATTR_ADDR: kindAddrNest}
	policyLimits = map[uint16]attrKind{
		mptcp.MPTCP_PM_ATTR_RCV_ADD_ADDRS: kindU32,
		mptcp.MPTCP_PM_ATTR_SUBFLOWS:      kindU32,
	}
	policyAddrToken = map[uint16]attrKind{
		mptcp.MPTCP_PM_ATTR_ADDR:  kindAddrNest,
		mptcp.MPTCP_PM_ATTR_TOKEN: kindU32,
	}
	policySubflow = map[uint16]attrKind{
		mptcp.MPTCP_PM_ATTR_ADDR:        kindAddrNest,
		mptcp.MPTCP_PM_ATTR_TOKEN:       kindU32,
		mptcp.MPTCP_PM_ATTR_ADDR_REMOTE: kindAddrNest,
	}
)

// ackOnly adapts a handler that answers with an ack only.
func ackOnly(f func(k *Kernel, r *request) *kerr) func(*Kernel, *request) ([]byte, *kerr) {
	return func(k *Kernel, r *request) ([]byte, *kerr) { return nil, f(k, r) }
}

var commands = map[uint8]command{
	mptcp.MPTCP_PM_CMD_ADD_ADDR:    {name: "ADD_ADDR", policy: policyAddr, do: ackOnly((*Kernel).addAddr), mutate: true},
	mptcp.MPTCP_PM_CMD_DEL_ADDR:    {name: "DEL_ADDR", policy: policyAddr, do: ackOnly((*Kernel).delAddr), mutate: true},
	mptcp.MPTCP_PM_CMD_GET_ADDR:    {name: "GET_ADDR", policy: policyAddrToken, do: (*Kernel).getAddr, dump: (*Kernel).dumpAddrs},
	mptcp.MPTCP_PM_CMD_FLUSH_ADDRS: {name: "FLUSH_ADDRS", policy: policyAddr, do: ackOnly((*Kernel).flushAddrs), mutate: true},
	mptcp.MPTCP_PM_CMD_SET_LIMITS:  {name: "SET_LIMITS", policy: policyLimits, do: ackOnly((*Kernel).setLimits), mutate: true},
	mptcp.MPTCP_PM_CMD_GET_LIMITS:  {name: "GET_LIMITS", policy: policyLimits, do: (*Kernel).getLimits},
	mptcp.MPTCP_PM_CMD_SET_FLAGS:   {name: "SET_FLAGS", policy: policySubflow, do: ackOnly((*Kernel).setFlags), mutate: true},
	mptcp.MPTCP_PM_CMD_ANNOUNCE:    {name: "ANNOUNCE", policy: policyAddrToken, do: ackOnly((*Kernel).announce), mutate: true},
	mptcp.MPTCP_PM_CMD_REMOVE: {name: "REMOVE", policy: map[uint16]attrKind{
		mptcp.MPTCP_PM_ATTR_TOKEN:  kindU32,
		mptcp.MPTCP_PM_ATTR_LOC_ID: kindU8,
	}, do: ackOnly((*Kernel).remove), mutate: true},
	mptcp.MPTCP_PM_CMD_SUBFLOW_CREATE:  {name: "SUBFLOW_CREATE", policy: policySubflow, do: ackOnly((*Kernel).subflowCreate), mutate: true},
	mptcp.MPTCP_PM_CMD_SUBFLOW_DESTROY: {name: "SUBFLOW_DESTROY", policy: policySubflow, do: ackOnly((*Kernel).subflowDestroy), mutate: true},
}

// serve answers one message sent on a socket with opts, returning the
// datagrams to queue on that socket.
func (k *Kernel) serve(m netlink.Message, opts ackOptions) [][]netlink.Message {
	k.mu.Lock()
	defer k.mu.Unlock()
	h := m.Header
	// netlink_rcv_skb: only requests are processed, and control types are
	// merely acknowledged.
	if h.Flags&netlink.Request == 0 || h.Type < nlmsgMinType {
		if h.Flags&netlink.Acknowledge != 0 {
			return [][]netlink.Message{{ack(m, nil, opts)}}
		}
		return nil
	}
	if len(m.Data) < genlHdrLen {
		return [][]netlink.Message{{ack(m, &kerr{errno: unix.EINVAL}, opts)}}
	}
	var replies [][]netlink.Message
	var err *kerr
	switch {
	case h.Type == unix.GENL_ID_CTRL:
		replies, err = k.serveCtrl(m)
	case h.Type == familyID && !k.hidden:
		replies, err = k.serveMPTCP(m, opts)
	default:
		err = &kerr{errno: unix.ENOENT}
	}
	if err != nil {
		return [][]netlink.Message{{ack(m, err, opts)}}
	}
	if h.Flags&netlink.Acknowledge != 0 && (len(replies) == 0 || !isDump(h)) {
		replies = append(replies, []netlink.Message{ack(m, nil, opts)})
	}
	return replies
}

func isDump(h netlink.Header) bool { return h.Flags&netlink.Dump == netlink.Dump }

// serveMPTCP is genl_family_rcv_msg for mptcp_pm. An error is returned
// for the caller to ack; a failed dump answers with its own NLMSG_DONE.
func (k *Kernel) serveMPTCP(m netlink.Message, opts ackOptions) ([][]netlink.Message, *kerr) {
	cmd := m.Data[0]
	c, ok := commands[cmd]
	dump := isDump(m.Header)
	if !ok || (dump && c.dump == nil) || (!dump && c.do == nil) {
		return nil, &kerr{errno: unix.EOPNOTSUPP}
	}
	r, err := decodeRequest(m, c.policy)
	if err == nil {
		err = k.injectedFailure(cmd)
	}
	var reply []byte
	var entries [][]byte
	if err == nil {
		if dump {
			entries, err = c.dump(k, r)
		} else {
			reply, err = c.do(k, r)
		}
	}
	if c.mutate {
		k.ops = append(k.ops, decodeOp(r, cmd, err))
	}
	switch {
	case dump && err != nil && r != nil:
		return [][]netlink.Message{{dumpDone(m, err, opts)}}, nil
	case err != nil:
		return nil, err
	case dump:
		// Small dumps fit one skb: the entries and NLMSG_DONE arrive in
		// one datagram.
		msgs := make([]netlink.Message, 0, len(entries)+1)
		for _, e := range entries {
			msgs = append(msgs, message(m.Header, familyID, netlink.Multi, genlPayload(mptcp.MPTCP_PM_CMD_GET_ADDR, e)))
		}
		return [][]netlink.Message{append(msgs, dumpDone(m, nil, opts))}, nil
	case reply != nil:
		return [][]netlink.Message{{message(m.Header, familyID, 0, genlPayload(cmd, reply))}}, nil
	}
	return nil, nil
}

// decodeRequest keeps the attributes of the command's policy and validates
// them as genetlink does before calling a handler.
func decodeRequest(m netlink.Message, policy map[uint16]attrKind) (*request, *kerr) {
	r := &request{attrs: parseAttrs(m.Data[genlHdrLen:], nlmsgHdrLen+genlHdrLen)}
	for t, a := range r.attrs {
		var err *kerr
		switch policy[t] {
		case 0:
			delete(r.attrs, t)
		case kindU8:
			_, err = policyU8(a)
		case kindU32:
			_, err = policyU32(a)
		case kindAddrNest:
			if len(a.data) > 0 && len(a.data) < nlaHdrLen {
				err = errPolicy(a)
			} else {
				err = validateAddrNest(a)
			}
		}
		if err != nil {
			return nil, err
		}
	}
	return r, nil
}

// injectedFailure consumes a failure set by FailNext or SetFailure.
func (k *Kernel) injectedFailure(cmd uint8) *kerr {
	if q := k.failNext[cmd]; len(q) > 0 {
		k.failNext[cmd] = q[1:]
		return &kerr{errno: q[0]}
	}
	if errno, ok := k.failAlways[cmd]; ok {
		return &kerr{errno: errno}
	}
	return nil
}

// decodeOp describes a mutating request for Ops, as far as it decodes.
func decodeOp(r *request, cmd uint8, err *kerr) Op {
	op := Op{Cmd: cmd}
	if err != nil {
		op.Errno = err.errno
	}
	if r == nil {
		return op
	}
	if a, ok := r.attrs[mptcp.MPTCP_PM_ATTR_ADDR]; ok {
		if ai, err := parseAddr(a, false, true); err == nil {
			op.Endpoint = entryFrom(ai).endpoint()
		}
	}
	if a, ok := r.attrs[mptcp.MPTCP_PM_ATTR_ADDR_REMOTE]; ok {
		if ai, err := parseAddr(a, false, false); err == nil {
			op.Remote = ai.addrPort()
		}
	}
	if a, ok := r.attrs[mptcp.MPTCP_PM_ATTR_TOKEN]; ok {
		v, _ := policyU32(a)
		op.Token = mptcp.Token(v)
	}
	if a, ok := r.attrs[mptcp.MPTCP_PM_ATTR_LOC_ID]; ok {
		v, _ := policyU8(a)
		op.LocalID = mptcp.ID(v)
	}
	if a, ok := r.attrs[mptcp.MPTCP_PM_ATTR_RCV_ADD_ADDRS]; ok {
		v, _ := policyU32(a)
		op.Limits.AddAddrAccepted = &v
	}
	if a, ok := r.attrs[mptcp.MPTCP_PM_ATTR_SUBFLOWS]; ok {
		v, _ := policyU32(a)
		op.Limits.Subflows = &v
	}
	return op
}

// serveCtrl answers the nlctrl family's CTRL_CMD_GETFAMILY, the only
// nlctrl request genetlink.Conn makes, about mptcp_pm.
func (k *Kernel) serveCtrl(m netlink.Message) ([][]netlink.Message, *kerr) {
	if m.Data[0] != unix.CTRL_CMD_GETFAMILY {
		return nil, &kerr{errno: unix.EOPNOTSUPP}
	}
	if isDump(m.Header) {
		msgs := []netlink.Message{}
		if !k.hidden {
			msgs = append(msgs, familyMessage(m.Header, netlink.Multi))
		}
		return [][]netlink.Message{append(msgs, dumpDone(m, nil, ackOptions{}))}, nil
	}
	attrs := parseAttrs(m.Data[genlHdrLen:], nlmsgHdrLen+genlHdrLen)
	found := false
	if a, ok := attrs[unix.CTRL_ATTR_FAMILY_NAME]; ok {
		name := string(a.data)
		if i := slices.Index(a.data, 0); i >= 0 {
			name = string(a.data[:i])
		}
		found = name == mptcp.MPTCP_PM_NAME
	} else if a, ok := attrs[unix.CTRL_ATTR_FAMILY_ID]; ok {
		v, err := policyU16(a)
		if err != nil {
			return nil, err
		}
		found = v == familyID
	} else {
		return nil, &kerr{errno: unix.EINVAL}
	}
	if !found || k.hidden {
		return nil, &kerr{errno: unix.ENOENT}
	}
	return [][]netlink.Message{{familyMessage(m.Header, 0)}}, nil
}

// familyMessage is ctrl_fill_info for mptcp_pm.
func familyMessage(req netlink.Header, flags netlink.HeaderFlags) netlink.Message {
	attrs := encodeAttrs(func(ae *netlink.AttributeEncoder) {
		ae.String(unix.CTRL_ATTR_FAMILY_NAME, mptcp.MPTCP_PM_NAME)
		ae.Uint16(unix.CTRL_ATTR_FAMILY_ID, familyID)
		ae.Uint32(unix.CTRL_ATTR_VERSION, mptcp.MPTCP_PM_VER)
		ae.Uint32(unix.CTRL_ATTR_HDRSIZE, 0)
		ae.Uint32(unix.CTRL_ATTR_MAXATTR, mptcp.MPTCP_PM_ATTR_ADDR_REMOTE)
		ae.Nested(unix.CTRL_ATTR_MCAST_GROUPS, func(n *netlink.AttributeEncoder) error {
			for i, g := range []struct {
				id   uint32
				name string
			}{{groupCmds, mptcp.MPTCP_PM_CMD_GRP_NAME}, {groupEvents, mptcp.MPTCP_PM_EV_GRP_NAME}} {
				n.Nested(uint16(i+1), func(gn *netlink.AttributeEncoder) error {
					gn.Uint32(unix.CTRL_ATTR_MCAST_GRP_ID, g.id)
					gn.String(unix.CTRL_ATTR_MCAST_GRP_NAME, g.name)
					return nil
				})
			}
			return nil
		})
	})
	data := make([]byte, genlHdrLen, genlHdrLen+len(attrs))
	data[0], data[1] = unix.CTRL_CMD_NEWFAMILY, nlctrlVersion
	return message(req, unix.GENL_ID_CTRL, flags, append(data, attrs...))
}

// errnoName is the errno's symbolic name for Op.String.
func errnoName(e syscall.Errno) string {
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return e.Error()
}
