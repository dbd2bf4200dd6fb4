// Package control is mptcpd's local control API: a Unix stream socket on
// which mptcpctl (or any program) asks the running daemon for its status,
// the reasons behind its decisions and its view of the connections, makes
// it reload, and watches its events.
//
// # Socket
//
// One daemon runs per network namespace, and each has its own socket,
// named like its state file: STATE_DIR/netns-DEV-INO.sock (SocketPath),
// DEV and INO being the device and inode of the namespace
// (/proc/thread-self/ns/net), by default in /run/mptcpd-go. It is mode
// 0660, owned by the daemon's user (root) and by the group mptcpd.conf's
// control-group names, if any: root and that group's members may
// connect, nobody else. A daemon replaces a socket left by one that died
// (nothing answers on it) and refuses to start while another answers.
//
// # Protocol
//
// The client writes one request per line, a JSON object naming a method;
// the daemon answers each with one line, a JSON object: the result, or
// {"error": "..."}. Requests are answered in order on one connection.
//
//	-> {"method":"status"}
//	<- {"version":"v1.2","pid":812,"mode":"in-kernel","links":[...],...}   (Status)
//	-> {"method":"explain"}
//	<- {"mode":"in-kernel","policy":"/etc/mptcpd/policy","decisions":[...],...}   (Explain)
//	-> {"method":"connections"}
//	<- {"mode":"userspace","plugin":"sspi","owned":[],"connections":[{"token":"7ab06eec",...}]}   (Connections)
//	-> {"method":"reload"}
//	<- {"config":"/etc/mptcpd/mptcpd.conf","policy":"/etc/mptcpd/policy"}   (Reloaded)
//	<- {"error":"/etc/mptcpd/policy:3: unknown keyword \"mtach\""}   (or: the old configuration stays)
//	-> {"method":"events"}
//	<- {"seq":1,"time":"...","kind":"addr","op":"new","link":"eth0","address":"10.0.0.2/24","text":"addr new ..."}
//	<- {"seq":2,"time":"...","kind":"endpoint","op":"added","link":"eth0","address":"10.0.0.2","text":"endpoint added ..."}
//	...
//
// "events" turns the connection into a stream of Event lines, numbered
// without gaps, until the client closes it. Network changes, the
// daemon's endpoint and limit writes, reloads and, in the userspace mode,
// the kernel's connection and subflow events and the plugin's commands
// are reported, in the order the daemon saw them.
//
// A line that is not JSON, names no or an unknown method gets an error
// reply and the connection stays usable; a line longer than MaxRequest
// (64 KiB) gets one and the connection is closed. None of it reaches the
// daemon's engine.
//
// # Never in the daemon's way
//
// The daemon's engine loop never waits for a client: status, explain and
// connections read the snapshot its last pass published; reload is a
// message to the loop, which the client waits for, not the other way
// round; events are queued per client in a bounded buffer
// (DefaultEventBuffer), and a client that falls that far behind is
// dropped, with a last {"error": ...} line. Replies that cannot be
// written within 10 s end the connection, and at most 64 clients are
// served at once.
package control
