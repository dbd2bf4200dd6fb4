package ctl

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// userspaceOp is the userspace command whose arguments are parsed.
type userspaceOp int

const (
	usAnnounce userspaceOp = iota
	usRemove
	usCreate
	usDestroy
	usBackup
	usNobackup
	usEndpoints
)

// userspaceKeyword is a keyword of the userspace commands.
type userspaceKeyword int

const (
	kwToken userspaceKeyword = iota
	kwLocal
	kwRemote
	kwID
	kwPort
	kwDev
)

// userspaceKeywords are matched by prefix in this order, as ip matches its
// keywords; no two start with the same letter, so one letter is enough.
var userspaceKeywords = []struct {
	name string
	kw   userspaceKeyword
}{
	{"token", kwToken},
	{"local", kwLocal},
	{"remote", kwRemote},
	{"id", kwID},
	{"port", kwPort},
	{"dev", kwDev},
}

// userspaceGrammar is what one command takes.
type userspaceGrammar struct {
	name     string             // the command, in messages
	keywords []userspaceKeyword // the keywords it takes, in usage order
	// bareAddress: a word that is no keyword is the (local) address, as
	// in `endpoint add`; port, id and dev describe it wherever they are.
	bareAddress bool
	backupFlag  bool // the "backup" flag word is taken
}

var userspaceGrammars = map[userspaceOp]userspaceGrammar{
	usAnnounce:  {name: "announce", keywords: []userspaceKeyword{kwID, kwToken, kwPort, kwDev}, bareAddress: true},
	usRemove:    {name: "remove", keywords: []userspaceKeyword{kwID, kwToken}},
	usCreate:    {name: "subflow create", keywords: []userspaceKeyword{kwToken, kwLocal, kwID, kwPort, kwDev, kwRemote}, backupFlag: true},
	usDestroy:   {name: "subflow destroy", keywords: []userspaceKeyword{kwToken, kwLocal, kwPort, kwRemote}},
	usBackup:    {name: "subflow backup", keywords: []userspaceKeyword{kwToken, kwLocal, kwPort, kwRemote}},
	usNobackup:  {name: "subflow nobackup", keywords: []userspaceKeyword{kwToken, kwLocal, kwPort, kwRemote}},
	usEndpoints: {name: "endpoints", keywords: []userspaceKeyword{kwToken}},
}

// takes reports whether the command takes keyword kw.
func (g userspaceGrammar) takes(kw userspaceKeyword) bool {
	for _, k := range g.keywords {
		if k == kw {
			return true
		}
	}
	return false
}

// words lists what the command takes, for messages.
func (g userspaceGrammar) words() string {
	var ws []string
	if g.bareAddress {
		ws = append(ws, "ADDRESS")
	}
	for _, k := range g.keywords {
		ws = append(ws, userspaceKeywords[k].name)
	}
	if g.backupFlag {
		ws = append(ws, "backup")
	}
	return strings.Join(ws, ", ")
}

// userspaceArgs are the parsed arguments of a userspace command.
type userspaceArgs struct {
	Token    mptcp.Token
	TokenSet bool
	// Local is announce's ADDRESS or a subflow's local address with its
	// id, port, device and (subflow create) the backup flag.
	Local mptcp.Endpoint
	IDSet bool
	// Remote is a subflow's remote address and port.
	RemoteAddr netip.Addr
	RemotePort uint16
}

// localAddrPort is the local address and port of a subflow.
func (a userspaceArgs) localAddrPort() netip.AddrPort {
	return netip.AddrPortFrom(a.Local.Addr, a.Local.Port)
}

func (a userspaceArgs) remote() netip.AddrPort {
	return netip.AddrPortFrom(a.RemoteAddr, a.RemotePort)
}

// addrSide is the address that port, id and dev describe.
type addrSide int

const (
	sideNone addrSide = iota
	sideLocal
	sideRemote
)

// parseUserspaceArgs parses the arguments of a userspace command with ip's
// conventions: keywords by prefix, each followed by its value, in any
// order, a repeated keyword overriding. A subflow has two addresses, so
// there "port" describes the address it follows ("local ADDRESS port NR",
// "remote ADDRESS port NR"), and id and dev, which only a local address
// has, must follow "local ADDRESS" too. Every argument is checked, and
// every required one present, before anything is sent; all errors are
// usage errors (ExitUsage), a bad address included. links resolves "dev"
// names and may be nil when there is none.
func parseUserspaceArgs(op userspaceOp, args []string, links LinkIndexer) (userspaceArgs, error) {
	g := userspaceGrammars[op]
	var a userspaceArgs
	// With one address (announce, remove) every word describes it.
	side := sideNone
	if !g.takes(kwLocal) {
		side = sideLocal
	}
	for c := (&argCursor{args: args}); c.more(); c.i++ {
		w := c.word()
		if g.backupFlag && w == "backup" {
			a.Local.Flags |= mptcp.FlagBackup
			continue
		}
		kw, ok := lookupUserspaceKeyword(w)
		if !ok {
			if !g.bareAddress {
				return a, invalidArgError(fmt.Sprintf("unknown keyword: %s takes %s", g.name, g.words()), w)
			}
			addr, err := userspaceAddr(w, fmt.Sprintf("neither an address nor a keyword (%s)", g.words()))
			if err != nil {
				return a, err
			}
			a.Local.Addr = addr
			continue
		}
		if !g.takes(kw) {
			return a, invalidArgError(fmt.Sprintf("%s takes %s", g.name, g.words()), w)
		}
		if err := a.parseKeyword(kw, c, &side, links); err != nil {
			return a, err
		}
	}
	return a, a.check(op, g)
}

// parseKeyword reads the value of keyword kw at c.
func (a *userspaceArgs) parseKeyword(kw userspaceKeyword, c *argCursor, side *addrSide, links LinkIndexer) error {
	w, name := c.word(), userspaceKeywords[kw].name
	if (kw == kwID || kw == kwDev) && *side != sideLocal {
		return invalidArgError(name+" describes the local address: write it after local ADDRESS", w)
	}
	if kw == kwPort && *side == sideNone {
		return invalidArgError("a port belongs to the address before it: write local ADDRESS port NR or remote ADDRESS port NR", w)
	}
	switch kw {
	case kwToken:
		tok, err := tokenValue(c)
		if err != nil {
			return err
		}
		a.Token, a.TokenSet = tok, true
	case kwLocal, kwRemote:
		addr, err := addrValue(c)
		if err != nil {
			return err
		}
		if kw == kwLocal {
			a.Local.Addr, *side = addr, sideLocal
		} else {
			a.RemoteAddr, *side = addr, sideRemote
		}
	case kwID:
		id, err := idValue(c)
		if err != nil {
			return err
		}
		a.Local.ID, a.IDSet = id, true
	case kwDev:
		idx, err := devValue(c, links)
		if err != nil {
			return err
		}
		a.Local.IfIndex = idx
	case kwPort:
		port, err := portValue(c)
		if err != nil {
			return err
		}
		if *side == sideLocal {
			a.Local.Port = port
		} else {
			a.RemotePort = port
		}
	}
	return nil
}

// tokenValue reads the value of a "token" keyword.
func tokenValue(c *argCursor) (mptcp.Token, error) {
	v, err := c.value()
	if err != nil {
		return 0, err
	}
	tok, ok := parseToken(v)
	if !ok {
		return 0, invalidArgError("invalid token: up to 8 hex digits, as monitor prints it", v)
	}
	return tok, nil
}

// addrValue reads the value of a "local" or "remote" keyword.
func addrValue(c *argCursor) (netip.Addr, error) {
	v, err := c.value()
	if err != nil {
		return netip.Addr{}, err
	}
	return userspaceAddr(v, "an IPv4 or IPv6 address is expected")
}

// check enforces what the command needs, in the order of its usage line.
func (a userspaceArgs) check(op userspaceOp, g userspaceGrammar) error {
	if op == usAnnounce && !a.Local.Addr.IsValid() {
		return missingArgError("ADDRESS")
	}
	if op == usAnnounce || op == usRemove {
		if !a.IDSet {
			return missingArgError("id")
		}
		if op == usAnnounce && a.Local.ID == 0 {
			// The kernel refuses it ("invalid addr id"): id 0 is the
			// initial subflow's address, which the peer knows already.
			return invalidArgError("announce needs an id from 1 to 255 (0 is the initial subflow's address)", "id")
		}
	}
	if !a.TokenSet {
		return missingArgError("token")
	}
	if op == usRemove || op == usAnnounce || op == usEndpoints {
		return nil
	}
	// The subflow commands.
	if !a.Local.Addr.IsValid() {
		return missingArgError("local")
	}
	if op == usCreate && !a.IDSet {
		return &ExitError{Code: ExitUsage, Msg: `Error: argument "id" is required after local ADDRESS (0 only for the initial subflow's address)`}
	}
	if op == usDestroy && a.Local.Port == 0 {
		return missingPortError("local")
	}
	if !a.RemoteAddr.IsValid() {
		return missingArgError("remote")
	}
	if (op == usCreate || op == usDestroy) && a.RemotePort == 0 {
		return missingPortError("remote")
	}
	if a.Local.Addr.Unmap().Is4() != a.RemoteAddr.Unmap().Is4() {
		return &ExitError{Code: ExitUsage, Msg: fmt.Sprintf("Error: %s: local %s and remote %s are of different address families",
			g.name, formatAddr(a.Local.Addr), formatAddr(a.RemoteAddr))}
	}
	return nil
}

// missingPortError says that the address of side needs a port.
func missingPortError(side string) error {
	return &ExitError{Code: ExitUsage, Msg: fmt.Sprintf("Error: argument \"port\" is required after %s ADDRESS", side)}
}

func lookupUserspaceKeyword(w string) (userspaceKeyword, bool) {
	for _, k := range userspaceKeywords {
		if matches(w, k.name) {
			return k.kw, true
		}
	}
	return 0, false
}

// userspaceAddr parses an address word; why says what was expected.
// Unlike ip's get_addr in the endpoint commands (exit 1), a bad address
// is a usage error here.
func userspaceAddr(w, why string) (netip.Addr, error) {
	addr, kind := parseAddress(w)
	switch kind {
	case addrInvalid:
		return addr, invalidArgError(why, w)
	case addrUnspecified:
		return addr, invalidArgError("names no address: an IPv4 or IPv6 address is expected", w)
	}
	return addr, nil
}

// parseToken reads a connection token as monitor and connections print it:
// hex, up to 8 digits, "0x" allowed. Always hex, unlike ip's numbers: a
// token is copied from those outputs, where it has no prefix.
func parseToken(s string) (mptcp.Token, bool) {
	h := s
	if len(h) > 2 && h[0] == '0' && h[1]|0x20 == 'x' {
		h = h[2:]
	}
	if h == "" || len(h) > 8 {
		return 0, false
	}
	v, err := strconv.ParseUint(h, 16, 32)
	if err != nil {
		return 0, false
	}
	return mptcp.Token(v), true
}
