package cluster

import (
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

func startGossips(t *testing.T, n int) []*Gossip {
	t.Helper()
	return startKeyedGossips(t, n, nil)
}

// startKeyedGossips starts n members g0… sharing key (nil: plain gossip)
// and waits until each sees all.
func startKeyedGossips(t *testing.T, n int, key []byte) []*Gossip {
	t.Helper()
	var gs []*Gossip
	for i := range n {
		g, err := NewGossip(GossipConfig{Name: fmt.Sprintf("g%d", i), BindAddr: "127.0.0.1", Fast: true, SecretKey: key,
			Logger: zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { g.Close() })
		gs = append(gs, g)
	}
	for _, g := range gs[1:] {
		if _, err := g.Join([]string{gs[0].Addr()}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, g := range gs {
		for len(g.Alive()) != n {
			if time.Now().After(deadline) {
				t.Fatalf("%s sees %v, want %d members", g.Name(), g.Alive(), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return gs
}

// waitMember waits for an event about name of one of kinds on g.
func waitMember(t *testing.T, g *Gossip, name string, timeout time.Duration, kinds ...MemberEventKind) MemberEvent {
	t.Helper()
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	for {
		select {
		case ev := <-g.Events():
			for _, k := range kinds {
				if ev.Name == name && ev.Kind == k {
					return ev
				}
			}
		case <-tm.C:
			t.Fatalf("%s: no %v event for %s within %v", g.Name(), kinds, name, timeout)
		}
	}
}

func TestGossipFailureDetection(t *testing.T) {
	gs := startGossips(t, 3)
	start := time.Now()
	if err := gs[2].Shutdown(); err != nil { // a crash: no Leave
		t.Fatal(err)
	}
	for _, g := range gs[:2] {
		waitMember(t, g, "g2", 5*time.Second, MemberLeave)
	}
	t.Logf("gossip failure detection: %v", time.Since(start).Round(time.Millisecond))
	if alive := gs[0].Alive(); alive["g2"] || !alive["g1"] {
		t.Errorf("alive = %v", alive)
	}
}

func TestGossipLeaveAndRejoin(t *testing.T) {
	gs := startGossips(t, 2)
	if err := gs[1].Close(); err != nil {
		t.Fatal(err)
	}
	if err := gs[1].Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	waitMember(t, gs[0], "g1", 3*time.Second, MemberLeave)
	if _, ok := <-gs[1].Events(); ok {
		// drain: Close closes the channel eventually
		for range gs[1].Events() {
		}
	}
	// A new process under the same name on a new port is admitted.
	g, err := NewGossip(GossipConfig{Name: "g1", BindAddr: "127.0.0.1", Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := g.Join([]string{gs[0].Addr()}); err != nil {
		t.Fatal(err)
	}
	waitMember(t, gs[0], "g1", 3*time.Second, MemberJoin)
}

func TestGossipEventsNeverBlock(t *testing.T) {
	g := &Gossip{log: zap.NewNop(), events: make(chan MemberEvent, 2)}
	for i := range 5 {
		g.push(MemberEvent{Name: fmt.Sprint(i)})
	}
	if g.Dropped() != 3 {
		t.Fatalf("dropped %d, want 3", g.Dropped())
	}
	if a, b := <-g.events, <-g.events; a.Name != "3" || b.Name != "4" {
		t.Fatalf("kept %s %s, want the newest 3 4", a.Name, b.Name)
	}
}
