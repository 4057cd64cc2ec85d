// Package endpoint is the one address type shared by the renderers, the
// admin client, the topology decisions and the controller: an IP literal
// and a port (Sentinel runs with resolve-hostnames no).
package endpoint

import (
	"cmp"
	"net"
	"strconv"
)

// Endpoint is an ip:port.
type Endpoint struct {
	Host string
	Port int
}

// String is host:port.
func (e Endpoint) String() string { return net.JoinHostPort(e.Host, strconv.Itoa(e.Port)) }

// IsZero reports whether the endpoint is unset.
func (e Endpoint) IsZero() bool { return e.Host == "" }

// Compare orders endpoints by host, then port.
func Compare(a, b Endpoint) int {
	return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.Port, b.Port))
}
