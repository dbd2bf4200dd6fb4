package policy

import "github.com/mptcpd-go/mptcpd/nl/mptcp"

// Default is the built-in policy, for a roaming laptop: no endpoints on
// loopback or on virtual links without a default route (bridges, veths of
// containers); cellular as a backup path; ethernet preferred over wifi
// over anything else when more addresses are up than the kernel takes.
//
// Its endpoints are subflow endpoints. addrFlags, when not 0 (Intel's
// addr-flags from mptcpd.conf), replace subflow; the wwan rule keeps its
// backup flag on top.
func Default(base Settings, addrFlags mptcp.Flags) *Policy {
	flags := mptcp.FlagSubflow
	if addrFlags != 0 {
		flags = addrFlags
	}
	no := false
	return &Policy{
		Source:   "built-in",
		Settings: base,
		Rules: []Rule{
			{Kinds: []Kind{KindLoopback}, Ignore: true},
			{Kinds: []Kind{KindVirtual}, DefaultRoute: &no, Ignore: true},
			{Kinds: []Kind{KindWWAN}, Flags: flags | mptcp.FlagBackup, Priority: 10},
			{Kinds: []Kind{KindEthernet}, Flags: flags, Priority: 30},
			{Kinds: []Kind{KindWiFi}, Flags: flags, Priority: 20},
			{Flags: flags, Priority: 15},
		},
	}
}
