package intercept

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Names inside the table, as `nft list table` shows them.
const (
	chainPrerouting = "prerouting"
	chainRedirect   = "redirect"
	setInterfaces   = "interfaces"
)

// comment tags rules, so that `nft list ruleset` says who made them.
const comment = "mptcpd relay: "

// ruleset is everything Install sends, computed from a Config without the
// kernel.
type ruleset struct {
	table  *nftables.Table
	chains []*nftables.Chain
	sets   []set
	rules  []*nftables.Rule
}

type set struct {
	*nftables.Set
	elems []nftables.SetElement
}

// family is what differs between IPv4 and IPv6 matches in an inet table.
type family struct {
	name    string // for set names: "v4", "v6"
	nfproto byte   // meta nfproto
	keyType nftables.SetDatatype
	// Offsets of the source and destination addresses in the network
	// header, and their length.
	saddr, daddr, addrLen uint32
}

var families = []family{
	{"v4", unix.NFPROTO_IPV4, nftables.TypeIPAddr, 12, 16, 4},
	{"v6", unix.NFPROTO_IPV6, nftables.TypeIP6Addr, 8, 24, 16},
}

func (f family) has(a netip.Addr) bool { return a.Is4() == (f.nfproto == unix.NFPROTO_IPV4) }

// build turns a valid cfg into the table Install programs.
func build(cfg Config) ruleset {
	t := &nftables.Table{Name: cfg.table(), Family: nftables.TableFamilyINet}
	pre := &nftables.Chain{
		Name:     chainPrerouting,
		Table:    t,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookPrerouting,
		Priority: nftables.ChainPriorityNATDest,
	}
	redir := &nftables.Chain{Name: chainRedirect, Table: t}
	rs := ruleset{table: t, chains: []*nftables.Chain{pre, redir}}

	addSet := func(name, what string, key nftables.SetDatatype, interval bool, elems []nftables.SetElement) *nftables.Set {
		s := &nftables.Set{
			Table:    t,
			ID:       uint32(len(rs.sets) + 1),
			Name:     name,
			Constant: true,
			Interval: interval,
			KeyType:  key,
			Comment:  comment + what,
		}
		rs.sets = append(rs.sets, set{s, elems})
		return s
	}
	addRule := func(c *nftables.Chain, what string, exprs ...expr.Any) {
		rs.rules = append(rs.rules, &nftables.Rule{
			Table:    t,
			Chain:    c,
			Exprs:    exprs,
			UserData: userdata.AppendString(nil, userdata.TypeComment, comment+what),
		})
	}

	ifaces := make([]nftables.SetElement, len(cfg.Interfaces))
	for i, name := range cfg.Interfaces {
		ifaces[i] = nftables.SetElement{Key: ifname(name)}
	}
	lan := slices.Concat(
		[]expr.Any{&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}},
		lookup(addSet(setInterfaces, "LAN links", nftables.TypeIFName, false, ifaces)),
		[]expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		},
	)
	toRedirect := &expr.Verdict{Kind: expr.VerdictGoto, Chain: chainRedirect}
	if len(cfg.Sources) == 0 {
		addRule(pre, "TCP from the LAN", slices.Concat(lan, []expr.Any{toRedirect})...)
	}
	for _, f := range families {
		if elems := intervals(f, cfg.Sources); elems != nil {
			s := addSet("sources_"+f.name, "intercepted sources", f.keyType, true, elems)
			addRule(pre, "TCP from the LAN", slices.Concat(lan, f.match(f.saddr, s), []expr.Any{toRedirect})...)
		}
	}

	ret := &expr.Verdict{Kind: expr.VerdictReturn}
	addRule(redir, "the gateway's own addresses",
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, unix.RTN_LOCAL)},
		ret,
	)
	for _, f := range families {
		if elems := intervals(f, cfg.Exclude); elems != nil {
			s := addSet("exclude_"+f.name, "destinations not intercepted", f.keyType, true, elems)
			addRule(redir, "excluded destinations", slices.Concat(f.match(f.daddr, s), []expr.Any{ret})...)
		}
	}
	addRule(redir, fmt.Sprintf("to the relay on port %d", cfg.Port),
		&expr.Counter{},
		&expr.Immediate{Register: 1, Data: binary.BigEndian.AppendUint16(nil, cfg.Port)},
		// The kernel fills in max and flags; sending them keeps what it
		// lists back equal to what was sent.
		&expr.Redir{RegisterProtoMin: 1, RegisterProtoMax: 1, Flags: unix.NF_NAT_RANGE_PROTO_SPECIFIED},
	)
	return rs
}

// match is "ip[6] saddr/daddr @s": the family check first, since in an inet
// table the network header may be either.
func (f family) match(offset uint32, s *nftables.Set) []expr.Any {
	return append([]expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{f.nfproto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: f.addrLen},
	}, lookup(s)...)
}

func lookup(s *nftables.Set) []expr.Any {
	return []expr.Any{&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID}}
}

// ifname is a link name as meta iifname loads it: IFNAMSIZ bytes, NUL
// padded.
func ifname(name string) []byte {
	b := make([]byte, maxIfNameLen+1)
	copy(b, name)
	return b
}

// intervals are the elements of an interval set holding the prefixes of f
// among ps (valid and not overlapping): each range is its first address and
// an interval end one past its last, adjacent ranges merged, as nft sends
// them. A range reaching the family's last address has no end. nil when f has
// none.
func intervals(f family, ps []netip.Prefix) []nftables.SetElement {
	type span struct{ first, end netip.Addr } // end invalid: up to the last address
	var spans []span
	for _, p := range ps {
		if f.has(p.Addr()) {
			spans = append(spans, span{p.Addr(), lastAddr(p).Next()})
		}
	}
	slices.SortFunc(spans, func(a, b span) int { return a.first.Compare(b.first) })
	var elems []nftables.SetElement
	for i, s := range spans {
		if i > 0 && spans[i-1].end == s.first {
			elems = elems[:len(elems)-1] // merge: drop the previous end
		} else {
			elems = append(elems, nftables.SetElement{Key: s.first.AsSlice()})
		}
		if s.end.IsValid() {
			elems = append(elems, nftables.SetElement{Key: s.end.AsSlice(), IntervalEnd: true})
		}
	}
	return elems
}

// lastAddr is the highest address in p (a masked prefix).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := range b {
		switch net := p.Bits() - 8*i; {
		case net <= 0:
			b[i] = 0xff
		case net < 8:
			b[i] |= 0xff >> net
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// Install replaces cfg.Table with rules redirecting what cfg says to
// cfg.Port. A table of that name left by a crashed run goes in the same
// batch, so the kernel sees either the old table or the new one.
func Install(cfg Config) (*Rules, error) {
	if err := Validate(cfg); err != nil {
		return nil, err
	}
	rs := build(cfg)
	c, err := dial(cfg.NetNS)
	if err != nil {
		return nil, err
	}
	// Adding an existing table is no error, deleting a missing one is:
	// add, delete, add, as `nft -f` does to replace a table.
	c.AddTable(rs.table)
	c.DelTable(rs.table)
	c.AddTable(rs.table)
	for _, ch := range rs.chains {
		c.AddChain(ch)
	}
	for _, s := range rs.sets {
		if err := c.AddSet(s.Set, s.elems); err != nil {
			return nil, fmt.Errorf("intercept: set %s: %w", s.Name, err)
		}
	}
	for _, r := range rs.rules {
		c.AddRule(r)
	}
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("intercept: install table inet %s: %w", rs.table.Name, err)
	}
	return &Rules{table: rs.table.Name, netns: cfg.NetNS}, nil
}

// Remove deletes the table, and with it every rule Install made. Removing
// again, or a table someone else already deleted, is no error.
func (r *Rules) Remove() error {
	if r == nil {
		return nil
	}
	c, err := dial(r.netns)
	if err != nil {
		return err
	}
	t := &nftables.Table{Name: r.table, Family: nftables.TableFamilyINet}
	c.AddTable(t)
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("intercept: delete table inet %s: %w", r.table, err)
	}
	return nil
}

// dial returns a connection that opens a netlink socket per batch, in the
// namespace netns (0: the caller's).
func dial(netns int) (*nftables.Conn, error) {
	c, err := nftables.New(nftables.WithNetNSFd(netns))
	if err != nil {
		return nil, fmt.Errorf("intercept: nftables: %w", err)
	}
	return c, nil
}
