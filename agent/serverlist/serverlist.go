// Package serverlist is the agent's server setting: the address of one
// evident-server (HOST:PORT), or of several replicas separated by commas.
// It validates the setting and opens the one gRPC channel the agent uses
// over it: pick_first across every address, in an order shuffled per
// channel so a fleet spreads over the replicas, moving on to the next
// address when the connected server goes away.
package serverlist

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
)

// Max bounds the addresses in one setting.
const Max = 16

// Parse splits a server setting into its addresses, trimming the spaces
// around each. Every address is HOST:PORT with a port of 1-65535; none may be
// empty or repeated. With several addresses an error names the bad one.
func Parse(s string) ([]string, error) {
	parts := strings.Split(s, ",")
	if len(parts) > Max {
		return nil, fmt.Errorf("%d addresses; at most %d", len(parts), Max)
	}
	out := make([]string, 0, len(parts))
	for i, p := range parts {
		p = strings.TrimSpace(p)
		err := check(p)
		if err == nil && slices.Contains(out, p) {
			err = errors.New("listed twice")
		}
		if err != nil && len(parts) > 1 {
			err = fmt.Errorf("address %d %q: %w", i+1, p, err)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func check(addr string) error {
	if addr == "" {
		return errors.New("empty; want HOST:PORT")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return errors.New("want HOST:PORT")
	}
	if net.ParseIP(host) == nil && strings.ContainsFunc(host, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '.' || r == '_')
	}) {
		return fmt.Errorf("host %q is neither an IP address nor a DNS name", host)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return errors.New("port must be 1-65535")
	}
	return nil
}

// Host is the host part of a HOST:PORT address, what the server's
// certificate must name.
func Host(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

// serviceConfig picks the first address that answers, from a list shuffled
// once per channel and again at each re-resolution (gRFC A62).
const serviceConfig = `{"loadBalancingConfig": [{"pick_first": {"shuffleAddressList": true}}]}`

// scheme names the per-channel resolver of a list of several addresses.
const scheme = "evident-servers"

// NewClient opens a channel to servers (as Parse returns them). One address
// is resolved by gRPC's DNS resolver, as grpc.NewClient does by default, so
// a name with several A or AAAA records spreads and fails over across them.
// Several addresses are handed to the channel by a resolver of its own
// (grpc.WithResolvers: nothing global), each with its HOST:PORT as the
// address's ServerName, so the TLS handshake verifies the certificate
// against the host of the address dialled and not of the first in the list.
// A server that goes away fails the streams on it; the next stream gets
// the next address that accepts a connection.
func NewClient(servers []string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	if len(servers) == 0 {
		return nil, errors.New("no server address")
	}
	opts = append(opts, grpc.WithDefaultServiceConfig(serviceConfig))
	if len(servers) == 1 {
		return grpc.NewClient("dns:///"+servers[0], opts...)
	}
	r := manual.NewBuilderWithScheme(scheme)
	eps := make([]resolver.Endpoint, len(servers))
	for i, s := range servers {
		eps[i] = resolver.Endpoint{Addresses: []resolver.Address{{Addr: s, ServerName: s}}}
	}
	r.InitialState(resolver.State{Endpoints: eps})
	// The target's endpoint is the channel's default authority; every
	// address overrides it with its own.
	return grpc.NewClient(scheme+":///"+servers[0], append(opts, grpc.WithResolvers(r))...)
}
