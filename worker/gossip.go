package worker

import (
	"context"
	"net"
	"strconv"

	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/internal/usage"
)

// startGossip joins the run's memberlist cluster (coordinators and workers),
// through which a dead worker is detected in about a second.
func (w *Worker) startGossip(ctx context.Context) (*cluster.Gossip, error) {
	bindHost, bindPort, err := splitHostPort("--gossip-listen", w.cfg.GossipListen)
	if err != nil {
		return nil, err
	}
	gc := cluster.GossipConfig{Name: w.cfg.ID, BindAddr: bindHost, BindPort: bindPort, Fast: w.cfg.FastGossip,
		SecretKey: w.cfg.GossipKey, Logger: w.log.Named("gossip")}
	if w.cfg.GossipAdvertise != "" {
		if gc.AdvertiseAddr, gc.AdvertisePort, err = splitHostPort("--gossip-advertise", w.cfg.GossipAdvertise); err != nil {
			return nil, err
		}
	} else if host, _, _ := net.SplitHostPort(w.addr); host != "" {
		// Peers reach this worker's gossip on the host they reach its gRPC
		// on; memberlist needs it as an IP.
		if ip := net.ParseIP(host); ip != nil {
			gc.AdvertiseAddr = host
		} else if ips, err := net.DefaultResolver.LookupIPAddr(ctx, host); err == nil && len(ips) > 0 {
			gc.AdvertiseAddr = ips[0].IP.String()
			for _, a := range ips {
				if a.IP.To4() != nil {
					gc.AdvertiseAddr = a.IP.String()
					break
				}
			}
		}
	}
	g, err := cluster.NewGossip(gc)
	if err != nil {
		return nil, err
	}
	var seeds []string
	if cs, err := w.run.Coordinators(ctx); err == nil {
		for _, c := range cs {
			seeds = append(seeds, c.Gossip)
		}
	}
	if ws, err := w.run.Workers(ctx); err == nil {
		for _, x := range ws {
			if x.ID != w.cfg.ID {
				seeds = append(seeds, x.Gossip)
			}
		}
	}
	if len(seeds) > 0 {
		if _, err := g.Join(seeds); err != nil {
			w.log.Warn("gossip join", zap.Strings("seeds", seeds), zap.Error(err))
		}
	}
	return g, nil
}

func splitHostPort(flag, s string) (string, int, error) {
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, usage.Errorf("%s %q: %v; give host:port, e.g. :7946", flag, s, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, usage.Errorf("%s %q: bad port; give host:port, e.g. :7946", flag, s)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}
