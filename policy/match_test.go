package policy

import (
	"net/netip"
	"testing"
)

func TestMatch(t *testing.T) {
	const text = `
classify usb* wwan
classify enx* wwan
classify usb0 ethernet
match name=wg*,tun?
    ignore
match family=6 address=2001:db8::/32,2001:db8:1::1
    flags signal
    priority 1
match family=inet kind=wifi,wwan default-route=yes
    flags subflow
    priority 2
match address=192.0.2.0/24 default-route=no
    flags backup
    priority 3
`
	custom, err := Parse("custom", []byte(text), Settings{})
	if err != nil {
		t.Fatal(err)
	}
	builtin := Default(DefaultConfig().BaseSettings(), 0)
	subject := func(name string, k Kind, addr string, dr bool) Subject {
		return Subject{Interface: name, Kind: k, Addr: netip.MustParseAddr(addr), DefaultRoute: dr}
	}
	for _, tc := range []struct {
		p    *Policy
		s    Subject
		line int // of the matching rule; 0: none
		prio int // of the built-in rule that matches; -1: ignore
	}{
		{custom, subject("wg0", KindVirtual, "10.0.0.1", true), 5, 0},
		{custom, subject("tun1", KindVirtual, "2001:db8::1", true), 5, 0},
		{custom, subject("tun10", KindVirtual, "2001:db8::1", true), 7, 0},
		{custom, subject("eth0", KindEthernet, "2001:db8:ffff::1", false), 7, 0},
		{custom, subject("eth0", KindEthernet, "2001:db8:1::1", false), 7, 0},
		{custom, subject("eth0", KindEthernet, "10.0.0.1", false), 0, 0},
		{custom, subject("eth0", KindEthernet, "2001:db9::1", false), 0, 0},
		{custom, subject("wlan0", KindWiFi, "10.0.0.1", true), 10, 0},
		{custom, subject("wlan0", KindWiFi, "::ffff:10.0.0.1", true), 10, 0},
		{custom, subject("wlan0", KindWiFi, "2001:db9::1", true), 0, 0},
		{custom, subject("wlan0", KindWiFi, "192.0.2.1", false), 13, 0},
		{custom, subject("wlan0", KindWiFi, "192.0.2.1", true), 10, 0},
		{custom, subject("eth1", KindEthernet, "192.0.2.1", true), 0, 0},
		{builtin, subject("lo", KindLoopback, "127.0.0.1", false), 0, -1},
		{builtin, subject("lo", KindLoopback, "127.0.0.1", true), 0, -1},
		{builtin, subject("docker0", KindVirtual, "172.17.0.1", false), 0, -1},
		{builtin, subject("wg0", KindVirtual, "10.8.0.2", true), 0, 15},
		{builtin, subject("wwan0", KindWWAN, "100.64.0.2", true), 0, 10},
		{builtin, subject("enp1s0", KindEthernet, "192.168.1.2", false), 0, 30},
		{builtin, subject("wlp2s0", KindWiFi, "2001:db8::2", true), 0, 20},
		{builtin, subject("ib0", KindOther, "10.0.0.2", false), 0, 15},
	} {
		r, ok := tc.p.Match(tc.s)
		switch {
		case tc.p == builtin:
			if !ok {
				t.Errorf("built-in policy, %+v: no match", tc.s)
				continue
			}
			got := r.Priority
			if r.Ignore {
				got = -1
			}
			if got != tc.prio {
				t.Errorf("built-in policy, %+v: rule priority %d, want %d", tc.s, got, tc.prio)
			}
		case tc.line == 0 && ok:
			t.Errorf("%+v matched the rule at %v, want no match", tc.s, r.Pos)
		case tc.line != 0 && (!ok || r.Pos.Line != tc.line):
			t.Errorf("%+v matched %v (%v), want line %d", tc.s, r, ok, tc.line)
		}
	}

	for _, tc := range []struct {
		name string
		kind Kind
		ok   bool
	}{
		{"usb0", KindWWAN, true}, // first match wins
		{"usb1", KindWWAN, true},
		{"enx001122334455", KindWWAN, true},
		{"eth0", 0, false},
		{"usb", KindWWAN, true},
		{"ethusb0", 0, false},
	} {
		k, ok := custom.ClassifyName(tc.name)
		if k != tc.kind || ok != tc.ok {
			t.Errorf("ClassifyName(%q) = %v, %v; want %v, %v", tc.name, k, ok, tc.kind, tc.ok)
		}
	}
	if _, ok := builtin.ClassifyName("usb0"); ok {
		t.Error("the built-in policy classifies usb0")
	}
}
