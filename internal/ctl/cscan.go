package ctl

import (
	"math"
	"net/netip"
	"strings"
)

// This file reproduces the C library and iproute2 helpers that decide which
// words `ip mptcp` accepts (matches, strtoul, get_u8/u16/u32, get_addr,
// check_ifname, inet_ntop), so that mptcpctl accepts and prints exactly
// what iproute2 6.1 does, including its lenient corners: numbers in hex or
// octal ("id 0x1f"), IPv4 shorthand ("10" is 10.0.0.0), signs and leading
// blanks that strtoul skips.

// matches reports whether word is a non-empty prefix of keyword: iproute2's
// matches(word, keyword) == 0. Callers try keywords in iproute2's order and
// take the first that matches, so "s" after "limits" means "set".
func matches(word, keyword string) bool {
	return word != "" && strings.HasPrefix(keyword, word)
}

// isCSpace is isspace() in the C locale.
func isCSpace(c byte) bool {
	return c == ' ' || (c >= '\t' && c <= '\r')
}

func digitValue(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'Z':
		return int(c-'A') + 10
	}
	return 99
}

// strtoul is glibc's strtoul(s, &end, base) on a 64-bit system, for base 0,
// 8, 10 or 16. It returns the value, the number of bytes consumed (0 when
// no digits were found: end == s) and whether the value overflowed (the
// value is then MaxUint64, as with ERANGE). A minus sign negates the result
// modulo 2^64, as C does.
func strtoul(s string, base int) (v uint64, n int, overflow bool) {
	i := 0
	for i < len(s) && isCSpace(s[i]) {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	if i < len(s) && s[i] == '0' {
		// "0x" switches to hex only when a hex digit follows; otherwise the
		// "0" is the number and parsing stops at the 'x'.
		if (base == 0 || base == 16) && i+2 < len(s) && s[i+1]|0x20 == 'x' && digitValue(s[i+2]) < 16 {
			i += 2
			base = 16
		} else if base == 0 {
			base = 8
		}
	} else if base == 0 {
		base = 10
	}
	start := i
	b := uint64(base)
	for ; i < len(s); i++ {
		d := digitValue(s[i])
		if d >= base {
			break
		}
		if !overflow {
			if v > (math.MaxUint64-uint64(d))/b {
				overflow = true
			} else {
				v = v*b + uint64(d)
			}
		}
	}
	if i == start {
		return 0, 0, false
	}
	if overflow {
		return math.MaxUint64, i, true
	}
	if neg {
		v = -v
	}
	return v, i, false
}

// getUnsigned is iproute2's get_u8/get_u16/get_u32 with base 0: the whole
// word must be a number no larger than max.
func getUnsigned(s string, max uint64) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	v, n, overflow := strtoul(s, 0)
	if n == 0 || n != len(s) || overflow || v > max {
		return 0, false
	}
	return v, true
}

// addrKind tells what parseAddress found.
type addrKind int

const (
	addrInvalid addrKind = iota
	addrValid
	addrUnspecified // "default", "any", "all"
)

// parseAddress is iproute2's get_addr_1(word, AF_UNSPEC): a word with a ':'
// is parsed by glibc's inet_pton(AF_INET6) (no zone), anything else as
// iproute2's lenient IPv4 (1 to 4 strtoul parts, so "10" is 10.0.0.0 and
// "012.0x10.1" is 10.16.1.0). An IPv4-mapped IPv6 word stays IPv6.
func parseAddress(s string) (netip.Addr, addrKind) {
	switch s {
	case "default", "any", "all":
		return netip.Addr{}, addrUnspecified
	}
	if strings.IndexByte(s, ':') >= 0 {
		a, ok := inetPton6(s)
		if !ok {
			return netip.Addr{}, addrInvalid
		}
		return netip.AddrFrom16(a), addrValid
	}
	a, ok := getAddrIPv4(s)
	if !ok {
		return netip.Addr{}, addrInvalid
	}
	return netip.AddrFrom4(a), addrValid
}

// getAddrIPv4 is iproute2's get_addr_ipv4: up to four strtoul (base 0)
// parts separated by dots; missing trailing parts are zero.
func getAddrIPv4(s string) ([4]byte, bool) {
	var a [4]byte
	for i := 0; i < 4; i++ {
		v, n, _ := strtoul(s, 0)
		if n == 0 || v > 255 {
			return a, false
		}
		a[i] = byte(v)
		s = s[n:]
		if s == "" {
			return a, true
		}
		if i == 3 || s[0] != '.' {
			return a, false
		}
		s = s[1:]
	}
	return a, false
}

// inetPton4 is glibc's inet_pton4: exactly four decimal octets, no leading
// zeros, nothing else.
func inetPton4(s string) ([4]byte, bool) {
	var a [4]byte
	tp, octets, sawDigit := 0, 0, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			if sawDigit && a[tp] == 0 {
				return a, false // leading zero
			}
			v := uint(a[tp])*10 + uint(c-'0')
			if v > 255 {
				return a, false
			}
			a[tp] = byte(v)
			if !sawDigit {
				if octets++; octets > 4 {
					return a, false
				}
				sawDigit = true
			}
		case c == '.' && sawDigit:
			if octets == 4 {
				return a, false
			}
			tp++
			sawDigit = false
		default:
			return a, false
		}
	}
	return a, octets == 4
}

// inetPton6 is glibc's inet_pton6.
func inetPton6(s string) ([16]byte, bool) {
	var dst [16]byte
	if s == "" {
		return dst, false
	}
	i := 0
	if s[0] == ':' {
		if len(s) < 2 || s[1] != ':' {
			return dst, false
		}
		i = 1
	}
	tp := 0
	colonp := -1
	curtok := i
	digits := 0
	val := 0
	for i < len(s) {
		c := s[i]
		i++
		if d := digitValue(c); d < 16 {
			if digits == 4 {
				return dst, false
			}
			val = val<<4 | d
			digits++
			continue
		}
		if c == ':' {
			curtok = i
			if digits == 0 {
				if colonp >= 0 {
					return dst, false
				}
				colonp = tp
				continue
			} else if i == len(s) {
				return dst, false
			}
			if tp+2 > 16 {
				return dst, false
			}
			dst[tp], dst[tp+1] = byte(val>>8), byte(val)
			tp += 2
			digits, val = 0, 0
			continue
		}
		if c == '.' && tp+4 <= 16 {
			if a, ok := inetPton4(s[curtok:]); ok {
				copy(dst[tp:], a[:])
				tp += 4
				digits = 0
				break
			}
		}
		return dst, false
	}
	if digits > 0 {
		if tp+2 > 16 {
			return dst, false
		}
		dst[tp], dst[tp+1] = byte(val>>8), byte(val)
		tp += 2
	}
	if colonp >= 0 {
		if tp == 16 {
			return dst, false // "::" would stand for no group at all
		}
		n := tp - colonp
		copy(dst[16-n:], dst[colonp:tp])
		for j := colonp; j < 16-n; j++ {
			dst[j] = 0
		}
		tp = 16
	}
	return dst, tp == 16
}

// formatAddr prints an address as glibc's inet_ntop does, which is what
// iproute2 prints. It differs from netip.Addr.String for IPv6 addresses
// whose first 96 bits are zero ("::1.2.3.4", not "::102:304").
func formatAddr(a netip.Addr) string {
	if a.Is4() {
		return a.String()
	}
	if !a.IsValid() {
		return ""
	}
	return inetNtop6(a.As16())
}

// inetNtop6 is glibc's inet_ntop6.
func inetNtop6(src [16]byte) string {
	var words [8]int
	for i := range words {
		words[i] = int(src[2*i])<<8 | int(src[2*i+1])
	}
	bestBase, bestLen := -1, 0
	curBase, curLen := -1, 0
	for i, w := range words {
		if w == 0 {
			if curBase == -1 {
				curBase, curLen = i, 1
			} else {
				curLen++
			}
			continue
		}
		if curBase != -1 {
			if bestBase == -1 || curLen > bestLen {
				bestBase, bestLen = curBase, curLen
			}
			curBase = -1
		}
	}
	if curBase != -1 && (bestBase == -1 || curLen > bestLen) {
		bestBase, bestLen = curBase, curLen
	}
	if bestBase != -1 && bestLen < 2 {
		bestBase = -1
	}
	var b strings.Builder
	for i := 0; i < 8; i++ {
		if bestBase != -1 && i >= bestBase && i < bestBase+bestLen {
			if i == bestBase {
				b.WriteByte(':')
			}
			continue
		}
		if i != 0 {
			b.WriteByte(':')
		}
		if i == 6 && bestBase == 0 && (bestLen == 6 || (bestLen == 5 && words[5] == 0xffff)) {
			b.WriteString(netip.AddrFrom4([4]byte(src[12:16])).String())
			return b.String()
		}
		b.WriteString(hexWord(words[i]))
	}
	if bestBase != -1 && bestBase+bestLen == 8 {
		b.WriteByte(':')
	}
	return b.String()
}

func hexWord(v int) string {
	const digits = "0123456789abcdef"
	if v == 0 {
		return "0"
	}
	var buf [4]byte
	i := len(buf)
	for v > 0 {
		i--
		buf[i] = digits[v&0xf]
		v >>= 4
	}
	return string(buf[i:])
}

// ifNameSize is IFNAMSIZ: names must be shorter.
const ifNameSize = 16

// checkIfname is iproute2's check_ifname, which mimics the kernel's
// dev_valid_name: non-empty, shorter than IFNAMSIZ, no '/' or blanks.
func checkIfname(name string) bool {
	if name == "" || len(name) >= ifNameSize {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '/' || isCSpace(name[i]) {
			return false
		}
	}
	return true
}

// ifIndexFromName is iproute2's ll_idx_a2n, the last resort of
// ll_name_to_index: sscanf(name, "if%u") names an index even when no such
// link exists. It returns 0 when the word has no such form.
func ifIndexFromName(name string) uint32 {
	rest, ok := strings.CutPrefix(name, "if")
	if !ok {
		return 0
	}
	v, n, _ := strtoul(rest, 10)
	if n == 0 {
		return 0
	}
	return uint32(v) // %u stores the low 32 bits
}
