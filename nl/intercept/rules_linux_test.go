package intercept

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
)

// ruleView is a rule as `nft list` would group it.
type ruleView struct {
	Chain, Comment string
	Exprs          []expr.Any
}

func TestBuild(t *testing.T) {
	// The expressions nft generates for the same rules (nft --debug=netlink).
	var (
		lanTCP = []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Lookup{SourceRegister: 1, SetName: "interfaces", SetID: 1},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{6}},
		}
		gotoRedirect = &expr.Verdict{Kind: expr.VerdictGoto, Chain: "redirect"}
		ret          = &expr.Verdict{Kind: expr.VerdictReturn}
		local        = ruleView{"redirect", "mptcpd relay: the gateway's own addresses", []expr.Any{
			&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, 2)},
			ret,
		}}
		redirectTo7070 = ruleView{"redirect", "mptcpd relay: to the relay on port 7070", []expr.Any{
			&expr.Counter{},
			&expr.Immediate{Register: 1, Data: []byte{0x1b, 0x9e}},
			&expr.Redir{RegisterProtoMin: 1, RegisterProtoMax: 1, Flags: 2},
		}}
	)
	ipMatch := func(nfproto byte, offset, length uint32, set string, id uint32) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{nfproto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: length},
			&expr.Lookup{SourceRegister: 1, SetName: set, SetID: id},
		}
	}
	cat := func(parts ...any) []expr.Any {
		var es []expr.Any
		for _, p := range parts {
			switch p := p.(type) {
			case []expr.Any:
				es = append(es, p...)
			case expr.Any:
				es = append(es, p)
			}
		}
		return es
	}

	for _, tt := range []struct {
		name      string
		cfg       Config
		wantTable string
		wantSets  map[string][]string
		wantRules []ruleView
	}{{
		name:      "all sources, nothing excluded",
		cfg:       Config{Interfaces: []string{"lan0", "wlan0"}, Port: 7070},
		wantTable: "mptcpd_relay",
		wantSets:  map[string][]string{"interfaces": {"lan0", "wlan0"}},
		wantRules: []ruleView{
			{"prerouting", "mptcpd relay: TCP from the LAN", cat(lanTCP, gotoRedirect)},
			local,
			redirectTo7070,
		},
	}, {
		name: "IPv4 sources only, both families excluded",
		cfg: Config{
			Table:      "relay",
			Interfaces: []string{"lan0"},
			Sources:    prefixes("192.168.7.0/24"),
			Exclude:    prefixes("2001:db8::/32", "198.51.100.0/24"),
			Port:       7070,
		},
		wantTable: "relay",
		wantSets: map[string][]string{
			"interfaces": {"lan0"},
			"sources_v4": {"192.168.7.0", "192.168.8.0 end"},
			"exclude_v4": {"198.51.100.0", "198.51.101.0 end"},
			"exclude_v6": {"2001:db8::", "2001:db9:: end"},
		},
		wantRules: []ruleView{
			{"prerouting", "mptcpd relay: TCP from the LAN", cat(lanTCP, ipMatch(2, 12, 4, "sources_v4", 2), gotoRedirect)},
			local,
			{"redirect", "mptcpd relay: excluded destinations", cat(ipMatch(2, 16, 4, "exclude_v4", 3), ret)},
			{"redirect", "mptcpd relay: excluded destinations", cat(ipMatch(10, 24, 16, "exclude_v6", 4), ret)},
			redirectTo7070,
		},
	}, {
		name: "sources of both families",
		cfg: Config{
			Interfaces: []string{"lan0"},
			Sources:    prefixes("fd00:7::/64", "192.168.7.0/24"),
			Port:       7070,
		},
		wantTable: "mptcpd_relay",
		wantSets: map[string][]string{
			"interfaces": {"lan0"},
			"sources_v4": {"192.168.7.0", "192.168.8.0 end"},
			"sources_v6": {"fd00:7::", "fd00:7:0:1:: end"},
		},
		wantRules: []ruleView{
			{"prerouting", "mptcpd relay: TCP from the LAN", cat(lanTCP, ipMatch(2, 12, 4, "sources_v4", 2), gotoRedirect)},
			{"prerouting", "mptcpd relay: TCP from the LAN", cat(lanTCP, ipMatch(10, 8, 16, "sources_v6", 3), gotoRedirect)},
			local,
			redirectTo7070,
		},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			if err := Validate(tt.cfg); err != nil {
				t.Fatal(err)
			}
			rs := build(tt.cfg)
			if rs.table.Name != tt.wantTable || rs.table.Family != nftables.TableFamilyINet {
				t.Errorf("table %v %q, want inet %q", rs.table.Family, rs.table.Name, tt.wantTable)
			}
			wantChains := []nftables.Chain{
				{Name: "prerouting", Table: rs.table, Type: "nat", Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest},
				{Name: "redirect", Table: rs.table},
			}
			var chains []nftables.Chain
			for _, c := range rs.chains {
				chains = append(chains, *c)
			}
			if diff := cmp.Diff(wantChains, chains); diff != "" {
				t.Errorf("chains (-want +got):\n%s", diff)
			}
			sets := make(map[string][]string)
			for _, s := range rs.sets {
				if s.Table != rs.table || !s.Constant || s.Interval != (s.KeyType != nftables.TypeIFName) {
					t.Errorf("set %s: table %s constant %v interval %v", s.Name, s.Table.Name, s.Constant, s.Interval)
				}
				sets[s.Name] = elemStrings(s.KeyType, s.elems)
			}
			if diff := cmp.Diff(tt.wantSets, sets); diff != "" {
				t.Errorf("sets (-want +got):\n%s", diff)
			}
			var rules []ruleView
			for _, r := range rs.rules {
				c, _ := userdata.GetString(r.UserData, userdata.TypeComment)
				rules = append(rules, ruleView{r.Chain.Name, c, r.Exprs})
				if r.Table != rs.table {
					t.Errorf("rule %q in table %s", c, r.Table.Name)
				}
			}
			if diff := cmp.Diff(tt.wantRules, rules); diff != "" {
				t.Errorf("rules (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIntervals(t *testing.T) {
	v4, v6 := families[0], families[1]
	for _, tt := range []struct {
		name string
		f    family
		in   []string
		want []string
	}{
		{"one prefix", v4, []string{"10.0.0.0/8"}, []string{"10.0.0.0", "11.0.0.0 end"}},
		{"sorted", v4, []string{"192.168.1.7/32", "192.168.1.5/32"},
			[]string{"192.168.1.5", "192.168.1.6 end", "192.168.1.7", "192.168.1.8 end"}},
		{"adjacent merged", v4, []string{"10.128.0.0/9", "10.0.0.0/9", "11.0.0.0/8"}, []string{"10.0.0.0", "12.0.0.0 end"}},
		{"up to the last address", v4, []string{"240.0.0.0/4"}, []string{"240.0.0.0"}},
		{"everything", v4, []string{"0.0.0.0/0"}, []string{"0.0.0.0"}},
		{"merged up to the last address", v4, []string{"255.255.255.255/32", "255.255.255.254/32"}, []string{"255.255.255.254"}},
		{"other family left out", v4, []string{"2001:db8::/32", "192.0.2.0/24"}, []string{"192.0.2.0", "192.0.3.0 end"}},
		{"odd prefix length", v6, []string{"2001:db8::/33"}, []string{"2001:db8::", "2001:db8:8000:: end"}},
		{"IPv6 everything", v6, []string{"::/0"}, []string{"::"}},
		{"none of the family", v6, []string{"192.0.2.0/24"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := elemStrings(tt.f.keyType, intervals(tt.f, prefixes(tt.in...)))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("intervals(%s, %q) (-want +got):\n%s", tt.f.name, tt.in, diff)
			}
		})
	}
}

// elemStrings shows set elements as addresses or link names, "end" marking
// interval ends.
func elemStrings(key nftables.SetDatatype, elems []nftables.SetElement) []string {
	var s []string
	for _, e := range elems {
		k := string(bytes.TrimRight(e.Key, "\x00"))
		if key != nftables.TypeIFName {
			a, _ := netip.AddrFromSlice(e.Key)
			k = a.String()
		}
		if len(e.Key) != int(key.Bytes) {
			k += " (wrong length)"
		}
		if e.IntervalEnd {
			k += " end"
		}
		s = append(s, k)
	}
	return s
}
