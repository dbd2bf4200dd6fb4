// Package socks5 speaks the server side of the SOCKS5 handshake (RFC 1928,
// with RFC 1929 username/password authentication) for the relay gateway's
// configured clients: applications that are told to use a proxy instead of
// being redirected to it transparently. Handshake reads exactly the
// greeting, the authentication and the CONNECT request, and returns where
// the client wants to go; it never dials, and the bytes after the request
// stay unread for the relay. Replying is the caller's choice: the gateway
// may Reply Succeeded at once, before its Multipath TCP connection to the
// destination is up, so that the proxy adds no round trip to the client's
// connection setup (a refused destination then shows up as a closed stream
// instead of a ConnectionRefused reply), or it may dial first and reply
// with the outcome.
package socks5
