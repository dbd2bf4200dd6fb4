package ctl

import (
	"math"
	"net/netip"
	"strings"
	"testing"
)

func TestMatches(t *testing.T) {
	tests := []struct {
		word, keyword string
		want          bool
	}{
		{"e", "endpoint", true},
		{"endp", "endpoint", true},
		{"endpoint", "endpoint", true},
		{"endpoints", "endpoint", false},
		{"", "endpoint", false},
		{"E", "endpoint", false},
		{"x", "endpoint", false},
	}
	for _, tt := range tests {
		if got := matches(tt.word, tt.keyword); got != tt.want {
			t.Errorf("matches(%q, %q) = %v, want %v", tt.word, tt.keyword, got, tt.want)
		}
	}
}

func TestStrtoul(t *testing.T) {
	tests := []struct {
		in       string
		base     int
		v        uint64
		n        int
		overflow bool
	}{
		{"0", 0, 0, 1, false},
		{"42", 0, 42, 2, false},
		{"0x1f", 0, 31, 4, false},
		{"0X1F", 0, 31, 4, false},
		{"017", 0, 15, 3, false},
		{"08", 0, 0, 1, false}, // octal stops at 8
		{"0x", 0, 0, 1, false}, // "0", stops at the x
		{"0xg", 0, 0, 1, false},
		{" \t7", 0, 7, 3, false},
		{"+7", 0, 7, 2, false},
		{"-1", 0, math.MaxUint64, 2, false},
		{"-0", 0, 0, 2, false},
		{"", 0, 0, 0, false},
		{"-", 0, 0, 0, false},
		{"x1", 0, 0, 0, false},
		{"18446744073709551615", 0, math.MaxUint64, 20, false},
		{"18446744073709551616", 0, math.MaxUint64, 20, true},
		{"99999999999999999999999x", 0, math.MaxUint64, 23, true},
		{"12ab", 10, 12, 2, false},
		{"0x10", 10, 0, 1, false},
		{"0x10", 16, 16, 4, false},
	}
	for _, tt := range tests {
		v, n, of := strtoul(tt.in, tt.base)
		if v != tt.v || n != tt.n || of != tt.overflow {
			t.Errorf("strtoul(%q, %d) = %d, %d, %v; want %d, %d, %v", tt.in, tt.base, v, n, of, tt.v, tt.n, tt.overflow)
		}
	}
}

func TestGetUnsigned(t *testing.T) {
	tests := []struct {
		in   string
		max  uint64
		want uint64
		ok   bool
	}{
		{"255", 0xff, 255, true},
		{"256", 0xff, 0, false},
		{"0xff", 0xff, 255, true},
		{"0377", 0xff, 255, true},
		{"-0", 0xff, 0, true},
		{"-1", 0xff, 0, false},
		{" 5", 0xff, 5, true},
		{"5 ", 0xff, 0, false},
		{"", 0xff, 0, false},
		{"0x", 0xff, 0, false},
		{"65535", 0xffff, 65535, true},
		{"70000", 0xffff, 0, false},
		{"4294967295", 0xffffffff, 4294967295, true},
		{"4294967296", 0xffffffff, 0, false},
		{"-4294967295", 0xffffffff, 0, false},
		{"1e3", 0xffffffff, 0, false},
	}
	for _, tt := range tests {
		got, ok := getUnsigned(tt.in, tt.max)
		if got != tt.want || ok != tt.ok {
			t.Errorf("getUnsigned(%q, %#x) = %d, %v; want %d, %v", tt.in, tt.max, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseAddress(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" when not an address
		kind addrKind
	}{
		{"10.0.0.1", "10.0.0.1", addrValid},
		// iproute2's lenient IPv4, checked against ip 6.1.
		{"10", "10.0.0.0", addrValid},
		{"10.1", "10.1.0.0", addrValid},
		{"012.0x10.1", "10.16.1.0", addrValid},
		{"1.-0.2.3", "1.0.2.3", addrValid},
		{"1. 2.3.4", "1.2.3.4", addrValid},
		{"256.0.0.1", "", addrInvalid},
		{"1.2.3.4.5", "", addrInvalid},
		{"1.2.3.", "", addrInvalid},
		{"1..2", "", addrInvalid},
		{"bogus", "", addrInvalid},
		{"", "", addrInvalid},
		{"-1", "", addrInvalid},
		{"dead:beef::1", "dead:beef::1", addrValid},
		{"::", "::", addrValid},
		{"::ffff:1.2.3.4", "::ffff:1.2.3.4", addrValid},
		{"::1.2.3.4", "::102:304", addrValid},
		{"fe80::1%lo", "", addrInvalid},
		{"1:2:3:4:5:6:7:8::", "", addrInvalid},
		{"1::2::3", "", addrInvalid},
		{":1::", "", addrInvalid},
		{"::01.2.3.4", "", addrInvalid},
		{"12345::", "", addrInvalid},
		{"default", "", addrUnspecified},
		{"any", "", addrUnspecified},
		{"all", "", addrUnspecified},
	}
	for _, tt := range tests {
		a, kind := parseAddress(tt.in)
		got := ""
		if a.IsValid() {
			got = a.String()
		}
		if got != tt.want || kind != tt.kind {
			t.Errorf("parseAddress(%q) = %q, %v; want %q, %v", tt.in, got, kind, tt.want, tt.kind)
		}
	}
	// An IPv4-mapped word stays IPv6, as ip sends it with AF_INET6.
	if a, _ := parseAddress("::ffff:1.2.3.4"); !a.Is4In6() {
		t.Errorf("parseAddress(::ffff:1.2.3.4) = %v, want a 4-in-6 address", a)
	}
}

func TestFormatAddr(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"10.0.0.1", "10.0.0.1"},
		{"::", "::"},
		{"::1", "::1"},
		{"dead:beef::1", "dead:beef::1"},
		{"2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"},
		{"2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"},
		{"1::", "1::"},
		// glibc prints IPv4-compatible and -mapped forms dotted.
		{"::102:304", "::1.2.3.4"},
		{"::ffff:102:304", "::ffff:1.2.3.4"},
		{"::ffff:0:0", "::ffff:0.0.0.0"},
		{"::1:0", "::0.1.0.0"},
		{"0:0:0:0:0:1:0:0", "::1:0:0"},
	}
	for _, tt := range tests {
		if got := formatAddr(netip.MustParseAddr(tt.in)); got != tt.want {
			t.Errorf("formatAddr(%s) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := formatAddr(netip.Addr{}); got != "" {
		t.Errorf("formatAddr(invalid) = %q, want empty", got)
	}
}

func TestCheckIfname(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"eth0", true},
		{"0123456789abcde", true},
		{"0123456789abcdef", false},
		{"", false},
		{"a/b", false},
		{"a b", false},
		{"a\tb", false},
	}
	for _, tt := range tests {
		if got := checkIfname(tt.in); got != tt.want {
			t.Errorf("checkIfname(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestIfIndexFromName(t *testing.T) {
	tests := []struct {
		in   string
		want uint32
	}{
		{"if77", 77},
		{"if77x", 77}, // sscanf ignores what follows
		{"if 3", 3},
		{"if-1", math.MaxUint32},
		{"if", 0},
		{"ifx", 0},
		{"eth0", 0},
	}
	for _, tt := range tests {
		if got := ifIndexFromName(tt.in); got != tt.want {
			t.Errorf("ifIndexFromName(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

// FuzzParseAddress checks that address parsing never panics, that IPv6
// words are accepted exactly when Go's parser accepts them (glibc and Go
// follow the same RFC 4291 text form; Go alone allows zones), and that
// printing and parsing back round-trips.
func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{"10.0.0.1", "10", "0x0a.1", "::", "::ffff:1.2.3.4", "1:2:3:4:5:6:7::", "::1.2.3.4", "fe80::1%x", "1::2::3", ":::", "1.2.3.4.5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, kind := parseAddress(s)
		if kind == addrValid != a.IsValid() {
			t.Fatalf("parseAddress(%q) = %v, %v: kind and address disagree", s, a, kind)
		}
		if strings.Contains(s, ":") && !strings.Contains(s, "%") {
			want, err := netip.ParseAddr(s)
			if (err == nil) != (kind == addrValid) || (err == nil && want != a) {
				t.Fatalf("parseAddress(%q) = %v, %v; netip.ParseAddr = %v, %v", s, a, kind, want, err)
			}
		}
		if kind != addrValid {
			return
		}
		out := formatAddr(a)
		b, kind2 := parseAddress(out)
		if kind2 != addrValid || b != a {
			t.Fatalf("parseAddress(%q) = %v, printed %q, parsed back as %v", s, a, out, b)
		}
	})
}
