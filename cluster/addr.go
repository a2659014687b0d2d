package cluster

import (
	"net"
	"os"
)

// AdvertiseAddr is the address others dial to reach a listener bound at a:
// the flag if given, a's address if its host is a specific IP, else this
// machine's hostname with a's port (a wildcard bind such as :7070).
func AdvertiseAddr(flag string, a net.Addr) string {
	if flag != "" {
		return flag
	}
	host, port, _ := net.SplitHostPort(a.String())
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		return a.String()
	}
	h, err := os.Hostname()
	if err != nil {
		h = "localhost"
	}
	return net.JoinHostPort(h, port)
}
