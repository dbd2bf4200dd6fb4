package ctl

import (
	"bytes"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// `userspace` is mptcpctl's own, not ip's: the userspace path manager's
// commands (ANNOUNCE, REMOVE, SUBFLOW_CREATE, SUBFLOW_DESTROY, SET_FLAGS
// and GET_ADDR with a token), by hand, as the kernel selftests' pm_nl_ctl
// sends them.

// userspaceUsage are the usage lines, indented to follow "Usage: ".
const userspaceUsage = `       mptcpctl userspace announce ADDRESS id ID token TOKEN [ port NR ] [ dev NAME ]
       mptcpctl userspace remove id ID token TOKEN
       mptcpctl userspace subflow create token TOKEN local ADDRESS id ID [ port NR ]
                          [ dev NAME ] remote ADDRESS port NR [ backup ]
       mptcpctl userspace subflow destroy token TOKEN local ADDRESS port NR
                          remote ADDRESS port NR
       mptcpctl userspace subflow { backup | nobackup } token TOKEN
                          local ADDRESS [ port NR ] remote ADDRESS [ port NR ]
       mptcpctl userspace endpoints token TOKEN`

const userspaceLong = `userspace drives the kernel's userspace path manager by hand, as the
kernel selftests' pm_nl_ctl does: it announces and withdraws local
addresses and creates, destroys and marks the subflows of one connection,
named by its token. The kernel accepts these commands only for
connections made while the namespace's net.mptcp.path_manager was
"userspace" ("userspace PM not selected" otherwise), and it accepts joins
and ADD_ADDRs only while some program in the namespace listens to the
events (mptcpctl monitor, or mptcpd).

` + userspaceUsage + `

The grammar is ip's, as in the endpoint commands: keywords followed by
their values, no dashes, in any order; every word may be shortened to a
prefix ("u s c t 7ab06eec l 10.0.2.2 i 1 r 10.0.1.1 p 5000"), and a
repeated keyword overrides. A subflow joins two addresses, so there "port"
belongs to the address it follows ("local ADDRESS port NR" is the local
port, "remote ADDRESS port NR" the remote one), and id and dev, which only
the local address has, follow "local ADDRESS" as well: a word never
changes meaning with its position otherwise. announce names its one
address bare, as "endpoint add" does.

TOKEN is the connection's token in hex as monitor and connections print
it ("7ab06eec"; up to 8 digits, "0x" allowed). Unlike ip's numbers it is
always hex: tokens are copied from that output, where they have no prefix.

  announce   sends ADD_ADDR for ADDRESS with id ID (1 to 255: 0 is the
             initial subflow's address, which the peer knows). For the
             peer's joins to it to be accepted, an MPTCP listener must
             exist on ADDRESS (and port).
  remove     sends RM_ADDR for id ID; id 0 withdraws the initial
             subflow's address.
  subflow create
             opens a subflow (MP_JOIN) from local ADDRESS with id ID (0
             only for the initial subflow's address) to remote ADDRESS
             and port; backup asks the peer to use it as a backup.
  subflow destroy
             closes a subflow, named by both addresses and ports
             ("connections" shows them).
  subflow backup, subflow nobackup
             set or clear the subflow's backup flag and tell the peer
             (MP_PRIO); a port left out matches any.
  endpoints  lists the local addresses the path manager holds for the
             connection (announced, or used by subflows) as "endpoint
             show" does, -j as "-j endpoint show".

A bad, missing or misplaced word is refused before anything is sent, with
a message naming it (exit 255, a bad address included); a refusal of the
kernel prints its message (exit 2).`

// userspaceCommand is the `userspace` tree, for help and completion; the
// words are run by r.userspace.
func (r *runner) userspaceCommand() *cobra.Command {
	us := r.leaf("userspace announce|remove|subflow|endpoints ...",
		"Drive the userspace path manager by hand, one connection at a time", r.userspace)
	us.Long = userspaceLong
	us.ValidArgsFunction = cobra.NoFileCompletions
	subflow := r.leaf("subflow create|destroy|backup|nobackup ...", "Create, destroy or mark a subflow", r.subflow)
	subflow.ValidArgsFunction = cobra.NoFileCompletions
	pair := []string{"token", "local", "port", "remote"}
	subflow.AddCommand(
		r.leaf("create token TOKEN local ADDRESS id ID [port NR] [dev NAME] remote ADDRESS port NR [backup]",
			"Open a subflow (MP_JOIN)", r.userspaceSend(usCreate), "token", "local", "id", "port", "dev", "remote", "backup"),
		r.leaf("destroy token TOKEN local ADDRESS port NR remote ADDRESS port NR",
			"Close a subflow", r.userspaceSend(usDestroy), pair...),
		r.leaf("backup token TOKEN local ADDRESS [port NR] remote ADDRESS [port NR]",
			"Make a subflow a backup one (MP_PRIO)", r.userspaceSend(usBackup), pair...),
		r.leaf("nobackup token TOKEN local ADDRESS [port NR] remote ADDRESS [port NR]",
			"Make a subflow a regular one (MP_PRIO)", r.userspaceSend(usNobackup), pair...),
	)
	us.AddCommand(
		r.leaf("announce ADDRESS id ID token TOKEN [port NR] [dev NAME]",
			"Announce a local address to the peer (ADD_ADDR)", r.userspaceSend(usAnnounce), "id", "token", "port", "dev"),
		r.leaf("remove id ID token TOKEN",
			"Withdraw an announced address (RM_ADDR)", r.userspaceSend(usRemove), "id", "token"),
		subflow,
		r.leaf("endpoints token TOKEN",
			"List the local addresses of a connection", r.userspaceEndpoints, "token"),
	)
	return us
}

// usageError prints the usage lines of a command group.
func usageError(lines string) error {
	return &ExitError{Code: ExitUsage, Msg: "Usage:" + strings.TrimPrefix(lines, "      ")}
}

// userspace is `userspace COMMAND ...`.
func (r *runner) userspace(args []string) error {
	if len(args) == 0 {
		return usageError(userspaceUsage)
	}
	return dispatch([]verb{
		{"announce", r.userspaceSend(usAnnounce)},
		{"remove", r.userspaceSend(usRemove)},
		{"subflow", r.subflow},
		{"endpoints", r.userspaceEndpoints},
	}, args)
}

// subflow is `userspace subflow COMMAND ...`.
func (r *runner) subflow(args []string) error {
	if len(args) == 0 {
		return usageError(userspaceUsage)
	}
	return dispatch([]verb{
		{"create", r.userspaceSend(usCreate)},
		{"destroy", r.userspaceSend(usDestroy)},
		{"backup", r.userspaceSend(usBackup)},
		{"nobackup", r.userspaceSend(usNobackup)},
	}, args)
}

// userspaceRequests send the request of each command but endpoints.
var userspaceRequests = map[userspaceOp]func(PathManager, userspaceArgs) error{
	usAnnounce: func(pm PathManager, a userspaceArgs) error {
		e := a.Local
		e.Flags |= mptcp.FlagSignal // the kernel announces signal addresses only
		return pm.Announce(a.Token, e)
	},
	usRemove: func(pm PathManager, a userspaceArgs) error { return pm.Remove(a.Token, a.Local.ID) },
	usCreate: func(pm PathManager, a userspaceArgs) error {
		return pm.CreateSubflow(a.Token, a.Local, a.remote())
	},
	usDestroy: func(pm PathManager, a userspaceArgs) error {
		return pm.DestroySubflow(a.Token, a.localAddrPort(), a.remote())
	},
	usBackup: func(pm PathManager, a userspaceArgs) error {
		return pm.SetSubflowBackup(a.Token, a.localAddrPort(), a.remote(), true)
	},
	usNobackup: func(pm PathManager, a userspaceArgs) error {
		return pm.SetSubflowBackup(a.Token, a.localAddrPort(), a.remote(), false)
	},
}

// userspaceSend runs command op: its arguments, then its request.
func (r *runner) userspaceSend(op userspaceOp) func([]string) error {
	send := userspaceRequests[op]
	return func(args []string) error {
		var a userspaceArgs
		return r.sendParsed(
			func(links LinkIndexer) (err error) {
				a, err = parseUserspaceArgs(op, args, links)
				return err
			},
			func(pm PathManager) error { return send(pm, a) })
	}
}

// userspaceEndpoints is `userspace endpoints token TOKEN`.
func (r *runner) userspaceEndpoints(args []string) error {
	a, err := parseUserspaceArgs(usEndpoints, args, nil)
	if err != nil {
		return err
	}
	return r.withPathManager(func(pm PathManager, b Backend) error {
		eps, err := pm.ConnectionEndpoints(a.Token)
		if err != nil {
			return kernelError(err)
		}
		var out bytes.Buffer
		formatEndpoints(&out, eps, r.format(), b)
		return r.write(&out)
	})
}

// completeTokens completes the tokens of the namespace's connections.
func (r *runner) completeTokens(prefix string) []string {
	b, err := r.open()
	if err != nil {
		return nil
	}
	conns, err := b.Connections()
	if err != nil {
		return nil
	}
	var out []string
	for _, c := range conns {
		if tok := c.Info.Token.String(); !c.Listening() && strings.HasPrefix(tok, prefix) {
			out = append(out, tok)
		}
	}
	return out
}
