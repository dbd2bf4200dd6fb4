package policy

import (
	"slices"
	"strconv"
	"strings"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// Value parsers shared by mptcpd.conf, the policy file and the command
// line. They return an *Error without a position; the caller adds it.

// addrFlagWords are the endpoint flags a user may ask for, in Intel's order.
var addrFlagWords = []string{"subflow", "signal", "backup", "fullmesh"}

// ParseAddrFlags reads mptcpd's addr-flags value: a comma-separated list
// of subflow, signal, backup and fullmesh. The empty string is no flags.
func ParseAddrFlags(s string) (mptcp.Flags, error) {
	f, e := parseFlagWords(splitList(s))
	if e != nil {
		return 0, e
	}
	return f, nil
}

// parseFlagWords reads endpoint flag words, refusing what the kernel
// would: implicit (kernel-made), signal with fullmesh (EINVAL). laminar
// (Linux 6.18) is left out until the path manager knows what to do with it.
func parseFlagWords(words []string) (mptcp.Flags, *Error) {
	var flags mptcp.Flags
	for _, w := range words {
		switch w {
		case "implicit":
			return 0, errorf("implicit cannot be configured").
				withHint("the kernel marks the addresses it uses on its own implicit")
		case "laminar":
			return 0, errorf("laminar is not supported by mptcpd-go").
				withHint("use subflow, signal, backup or fullmesh")
		}
		f, ok := mptcp.ParseFlag(w)
		if !ok {
			return 0, unknownWord("flag", w, addrFlagWords)
		}
		if flags&f != 0 {
			return 0, errorf("%s given twice", w)
		}
		flags |= f
	}
	if flags&mptcp.FlagSignal != 0 && flags&mptcp.FlagFullmesh != 0 {
		return 0, errorf("signal and fullmesh cannot be combined").
			withHint("the kernel refuses the pair (EINVAL); fullmesh goes with subflow")
	}
	return flags, nil
}

// NotifyFlags are mptcpd.conf's notify-flags: which address changes Intel's
// mptcpd tells its plugins about.
type NotifyFlags uint8

const (
	NotifyExisting      NotifyFlags = 1 << iota // existing
	NotifySkipLinkLocal                         // skip_link_local
	NotifySkipLoopback                          // skip_loopback
	NotifyCheckRoute                            // check_route
)

var notifyFlagWords = []string{"existing", "skip_link_local", "skip_loopback", "check_route"}

// String lists the flags as mptcpd.conf spells them, comma-separated.
func (f NotifyFlags) String() string {
	var words []string
	for i, w := range notifyFlagWords {
		if f&(1<<i) != 0 {
			words = append(words, w)
		}
	}
	return strings.Join(words, ",")
}

// ParseNotifyFlags reads mptcpd's notify-flags value: a comma-separated
// list of existing, skip_link_local, skip_loopback and check_route.
func ParseNotifyFlags(s string) (NotifyFlags, error) {
	f, e := parseNotifyFlags(s)
	if e != nil {
		return 0, e
	}
	return f, nil
}

func parseNotifyFlags(s string) (NotifyFlags, *Error) {
	var flags NotifyFlags
	for _, w := range splitList(s) {
		i := slices.Index(notifyFlagWords, w)
		if i < 0 {
			return 0, unknownWord("notify flag", w, notifyFlagWords)
		}
		if flags&(1<<i) != 0 {
			return 0, errorf("%s given twice", w)
		}
		flags |= 1 << i
	}
	return flags, nil
}

// splitList splits a comma-separated list, trimming blanks around items
// and dropping empty ones (as Intel's strtok does).
func splitList(s string) []string {
	var items []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	return items
}

// unknownWord is the error for a word that is not one of known.
func unknownWord(what, word string, known []string) *Error {
	e := errorf("unknown %s %q", what, word)
	if e.Hint = didYouMean(word, known); e.Hint == "" {
		e.Hint = "want one of " + strings.Join(known, ", ")
	}
	return e
}

// parseBool reads yes/no (also true/false, on/off, 1/0: mptcpd.conf's
// library spells booleans true/false).
func parseBool(s string) (bool, *Error) {
	switch strings.ToLower(s) {
	case "yes", "true", "on", "1":
		return true, nil
	case "no", "false", "off", "0":
		return false, nil
	}
	return false, errorf("%q is not yes or no", s)
}

// parseInt reads a decimal integer in [lo, hi].
func parseInt(s string, lo, hi int) (int, *Error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, errorf("%q is not an integer from %d to %d", s, lo, hi)
	}
	return n, nil
}

func formatBool(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
