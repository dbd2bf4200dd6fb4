package mptcpdiag

import (
	"errors"
	"net/netip"
	"testing"
)

// The decoders read kernel bytes: whatever arrives, they must return an
// error or a value, never panic. Run with e.g.
// go test ./nl/mptcpdiag -run '^$' -fuzz FuzzParseSubflow -fuzztime 30s

// checkSock checks what every decoded socket must satisfy.
func checkSock(t *testing.T, family uint8, local, remote netip.AddrPort) {
	t.Helper()
	for _, a := range []netip.Addr{local.Addr(), remote.Addr()} {
		if !a.IsValid() || a.Is4() != (family == AF_INET) {
			t.Fatalf("no error but address %v in family %d", a, family)
		}
	}
}

func FuzzParseConnection(f *testing.F) {
	f.Add(capturedConnection)
	f.Add(capturedJoin)
	f.Add(testSock{family: AF_INET6, state: StateListen, local: "[::1]:1"}.encode(f, attr(INET_DIAG_INFO, mptcpInfo(44, 7))))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseConnection(data)
		if err != nil {
			return
		}
		checkSock(t, c.Family, c.Local, c.Remote)
		if c.Info.Size != 0 && c.Info.Size < minMPTCPInfo {
			t.Fatalf("no error but an mptcp_info of %d bytes", c.Info.Size)
		}
	})
}

func FuzzParseSubflow(f *testing.F) {
	f.Add(capturedJoin)
	f.Add(capturedInitial)
	f.Add(capturedConnection)
	f.Add(testSock{family: AF_INET, local: "10.0.0.1:1"}.encode(f, ulpMPTCP(f, attr(MPTCP_SUBFLOW_ATTR_MAP_SEQ, u64(1)))))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := parseSubflow(data)
		if errors.Is(err, errNotSubflow) && s != (Subflow{}) {
			t.Fatalf("not a subflow, but a value: %+v", s)
		}
		if err != nil {
			return
		}
		checkSock(t, s.Family, s.Local, s.Remote)
	})
}
