package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/memberlist"

	"github.com/ringtrain/ringtrain/cluster"
)

// gossipRogueEnv tells the test binary, started again as a rogue gossip
// process (see TestMain), what to send: a gossipRogueSpec as JSON.
const gossipRogueEnv = "RINGTRAIN_TEST_GOSSIP_ROGUE"

// gossipRogueSpec is what the rogue process does.
type gossipRogueSpec struct {
	// Targets are the members' gossip addresses (host:port).
	Targets []string
	// Victim is the member every forged message claims is dead.
	Victim string
	// Incarnation is the victim's incarnation the forgeries claim; above
	// the real one, so that a member that accepted one would act on it.
	Incarnation uint32
	// KeyFile: empty, the rogue holds no key (it tries to join, then sends
	// every forgery in plaintext and under a key of its own); set, it holds
	// the run's key, like a member, and sends only the forgery Via names.
	KeyFile string
	// Via is "udp" (a dead message) or "tcp" (a push-pull whose state says
	// the victim left); with KeyFile only.
	Via string
}

// memberlist's wire format (v0.7, net.go and security.go): a packet is a
// message type byte then the message in msgpack; a stream starts with the
// same byte. With a keyring every packet is [version 1][12-byte nonce][AES-GCM
// sealed message], and every stream is [encryptMsg][length, uint32 big
// endian][the same], sealed with those first 5 bytes as additional data.
const (
	mlSuspectMsg  = 3
	mlAliveMsg    = 4
	mlDeadMsg     = 5
	mlPushPullMsg = 6
	mlCompressMsg = 9 // memberlist compresses its push-pull replies
	mlEncryptMsg  = 10
	mlErrMsg      = 13
	mlStateDead   = 2 // memberlist.StateDead
	mlStateLeft   = 3 // memberlist.StateLeft
)

// The messages, with memberlist's field names (msgpack encodes a struct as
// a map keyed by them).
type (
	mlSuspect struct {
		Incarnation uint32
		Node, From  string
	}
	mlDead      mlSuspect
	mlAliveBody struct {
		Incarnation uint32
		Node        string
		Addr        []byte
		Port        uint16
		Meta        []byte
		Vsn         []uint8
	}
	mlPushPullHeader struct {
		Nodes, UserStateLen int
		Join                bool
	}
	mlPushNodeState struct {
		Name        string
		Addr        []byte
		Port        uint16
		Meta        []byte
		Incarnation uint32
		State       int
		Vsn         []uint8
	}
)

// mlVsn is the protocol versions memberlist v0.7 announces: pmin, pmax,
// pcur, dmin, dmax, dcur.
var mlVsn = []uint8{1, 5, 2, 0, 0, 0}

func mlEncode(msgType byte, parts ...any) []byte {
	var b bytes.Buffer
	b.WriteByte(msgType)
	enc := codec.NewEncoder(&b, &codec.MsgpackHandle{})
	for _, p := range parts {
		if err := enc.Encode(p); err != nil {
			panic(err) // plain structs always encode
		}
	}
	return b.Bytes()
}

// mlSeal is memberlist's encryptPayload (version 1: no padding).
func mlSeal(key, msg, aad []byte) []byte {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // keys here are 16, 24 or 32 bytes
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	out := make([]byte, 1+gcm.NonceSize(), 1+gcm.NonceSize()+len(msg)+gcm.Overhead())
	out[0] = 1
	rand.Read(out[1:]) //nolint:errcheck // crypto/rand.Read never fails
	return gcm.Seal(out, out[1:], msg, aad)
}

// mlOpen reverses mlSeal.
func mlOpen(key, sealed, aad []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	if len(sealed) < 1+gcm.NonceSize() {
		return nil, fmt.Errorf("sealed payload of %d bytes", len(sealed))
	}
	return gcm.Open(nil, sealed[1:1+gcm.NonceSize()], sealed[1+gcm.NonceSize():], aad)
}

// mlPacket is msg as a UDP packet: plaintext without a key, else sealed.
func mlPacket(key, msg []byte) []byte {
	if key == nil {
		return msg
	}
	return mlSeal(key, msg, nil)
}

// mlStream is msg as the bytes of a TCP stream: plaintext without a key,
// else memberlist's encrypted frame.
func mlStream(key, msg []byte) []byte {
	if key == nil {
		return msg
	}
	hdr := make([]byte, 5, 5+1+12+len(msg)+16)
	hdr[0] = mlEncryptMsg
	binary.BigEndian.PutUint32(hdr[1:], uint32(1+12+len(msg)+16))
	return append(hdr, mlSeal(key, msg, hdr)...)
}

// pushPull sends a push-pull stream to addr and describes the reply.
func pushPull(addr string, key, msg []byte) string {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err.Error()
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(mlStream(key, msg)); err != nil {
		return "write: " + err.Error()
	}
	r := bufio.NewReader(c)
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return "no reply: " + err.Error()
	}
	if hdr[0] != mlEncryptMsg {
		return fmt.Sprintf("plaintext reply of type %d", hdr[0])
	}
	if key == nil {
		return "encrypted reply (unreadable without the key)"
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[1:]))
	if _, err := io.ReadFull(r, body); err != nil {
		return "short reply: " + err.Error()
	}
	plain, err := mlOpen(key, body, hdr)
	if err != nil || len(plain) == 0 {
		return fmt.Sprintf("reply not under the run's key: %v", err)
	}
	switch plain[0] {
	case mlPushPullMsg, mlCompressMsg:
		return "its state (push-pull accepted)"
	case mlErrMsg:
		return "an error (push-pull refused)"
	}
	return fmt.Sprintf("a reply of type %d", plain[0])
}

// gossipRogue is the test binary started again by
// TestSpoofedGossipChangesNothing: a separate process that attacks the
// members' gossip ports as the spec says and prints one line per attempt.
func gossipRogue(specJSON string) error {
	var spec gossipRogueSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		return err
	}
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	defer udp.Close()
	send := func(key, msg []byte) error {
		for _, t := range spec.Targets {
			a, err := net.ResolveUDPAddr("udp", t)
			if err != nil {
				return err
			}
			if _, err := udp.WriteTo(mlPacket(key, msg), a); err != nil {
				return err
			}
		}
		return nil
	}
	dead := mlEncode(mlDeadMsg, mlDead{Incarnation: spec.Incarnation, Node: spec.Victim, From: "rogue"})
	left := mlEncode(mlPushPullMsg, mlPushPullHeader{Nodes: 1},
		mlPushNodeState{Name: spec.Victim, Addr: net.IPv4(127, 0, 0, 1).To4(), Incarnation: spec.Incarnation, State: mlStateLeft, Vsn: mlVsn})

	if spec.KeyFile != "" {
		key, err := cluster.ReadGossipKeyFile("key", spec.KeyFile)
		if err != nil {
			return err
		}
		switch spec.Via {
		case "udp":
			if err := send(key, dead); err != nil {
				return err
			}
			fmt.Printf("udp with the run's key: dead %s sent to %d members\n", spec.Victim, len(spec.Targets))
		case "tcp":
			for _, t := range spec.Targets {
				fmt.Printf("tcp with the run's key %s: %s\n", t, pushPull(t, key, left))
			}
		default:
			return fmt.Errorf("via %q", spec.Via)
		}
		return nil
	}

	// A memberlist without the run's key, and one with a key of its own,
	// try to join.
	for _, tc := range []struct {
		name string
		key  []byte
	}{{"rogue-nokey", nil}, {"rogue-otherkey", cluster.NewGossipKey()}} {
		mc := memberlist.DefaultLocalConfig()
		mc.Name, mc.BindAddr, mc.BindPort, mc.AdvertisePort = tc.name, "127.0.0.1", 0, 0
		mc.SecretKey, mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = tc.key, true, true
		mc.Logger = log.New(io.Discard, "", 0)
		ml, err := memberlist.Create(mc)
		if err != nil {
			return err
		}
		n, err := ml.Join(spec.Targets)
		fmt.Printf("join %s: joined %d: %v\n", tc.name, n, err)
		ml.Shutdown()
	}

	// Forged packets: the victim is suspect, dead, and alive again at the
	// rogue's own address (whose probes then go unanswered): in plaintext
	// and under a key that is not the run's.
	rogueAddr := udp.LocalAddr().(*net.UDPAddr)
	msgs := [][]byte{
		mlEncode(mlSuspectMsg, mlSuspect{Incarnation: spec.Incarnation, Node: spec.Victim, From: "rogue"}),
		dead,
		mlEncode(mlDeadMsg, mlDead{Incarnation: spec.Incarnation, Node: spec.Victim, From: spec.Victim}), // "it left"
		mlEncode(mlAliveMsg, mlAliveBody{Incarnation: spec.Incarnation + 1, Node: spec.Victim,
			Addr: rogueAddr.IP.To4(), Port: uint16(rogueAddr.Port), Vsn: mlVsn}),
	}
	other := cluster.NewGossipKey()
	for range 3 { // memberlist retransmits too
		for _, m := range msgs {
			if err := send(nil, m); err != nil {
				return err
			}
			if err := send(other, m); err != nil {
				return err
			}
		}
	}
	fmt.Printf("udp: %d forged packets sent to %d members\n", 3*2*len(msgs), len(spec.Targets))

	// Forged push-pull streams: the victim is dead (memberlist suspects it)
	// and left (it declares it dead).
	deadState := mlEncode(mlPushPullMsg, mlPushPullHeader{Nodes: 1},
		mlPushNodeState{Name: spec.Victim, Addr: net.IPv4(127, 0, 0, 1).To4(), Incarnation: spec.Incarnation, State: mlStateDead, Vsn: mlVsn})
	for _, t := range spec.Targets {
		for _, m := range [][]byte{deadState, left} {
			fmt.Printf("tcp plaintext %s: %s\n", t, pushPull(t, nil, m))
			fmt.Printf("tcp under another key %s: %s\n", t, pushPull(t, other, m))
		}
	}
	return nil
}

// runGossipRogue runs the rogue process and returns its output.
func runGossipRogue(t *testing.T, spec gossipRogueSpec) string {
	t.Helper()
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), gossipRogueEnv+"="+string(b))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("rogue gossip process: %v\n%s", err, out)
	}
	t.Logf("rogue (key file %q, via %q):\n%s", spec.KeyFile, spec.Via, out)
	return string(out)
}

// eventsSince are the run's events after since.
func (c *testCluster) eventsSince(since time.Time) []cluster.Event {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	evs, err := c.run.Events(ctx, 0)
	if err != nil {
		c.t.Fatal(err)
	}
	var out []cluster.Event
	for _, ev := range evs {
		if ev.Time.After(since) {
			out = append(out, ev)
		}
	}
	return out
}

// waitEvent waits for an event of kind about who after since.
func (c *testCluster) waitEvent(kind, who string, since time.Time, within time.Duration) cluster.Event {
	c.t.Helper()
	ev, ok := poll(within, 50*time.Millisecond, func(context.Context) (cluster.Event, bool) {
		for _, ev := range c.eventsSince(since) {
			if ev.Kind == kind && ev.Who == who {
				return ev, true
			}
		}
		return cluster.Event{}, false
	})
	if !ok {
		c.t.Fatalf("no %s event about %s within %v; events since: %+v", kind, who, within, c.eventsSince(since))
	}
	return ev
}

// notDone fails the test if the run already finished before what: the
// run's steps are then too few for what the test does during it.
func (c *testCluster) notDone(what string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if sum, done, err := c.run.Done(ctx); err != nil || done {
		c.t.Fatalf("the run finished (%+v, %v) before %s was over; give it more --steps", sum, err, what)
	}
}

// logHas reports whether the process's log holds s.
func logHas(t *testing.T, p *proc, s string) bool {
	t.Helper()
	b, err := os.ReadFile(p.log)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(b), s)
}

// Spoofed gossip from a separate process changes nothing. A rogue process
// without the run's gossip key cannot join the members' gossip (neither
// without a key nor with one of its own), and its forgeries in memberlist's
// wire format — the victim suspect, dead, left, or alive at the rogue's
// address, as UDP packets and as push-pull streams, in plaintext and under
// the wrong key — reach every member, which drops each one (its log says
// why) and neither suspects nor refutes anything. The same forgery under
// the run's key, as any member could send it, does reach failure detection:
// the coordinator records the victim suspected, the victim refutes it and
// recovers — and still no worker is evicted, since gossip's "dead" alone
// never changes the ring. The run keeps the generation it had before the
// rogue and ends with the undisturbed run's model.
func TestSpoofedGossipChangesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	// Long enough (about 10 s on 2 cores) that the run outlives the rogue.
	args := []string{"--layers", "784-32-10", "--steps", "4000", "--checkpoint-every", "1000", "--min-workers", "2"}
	referenceHash(t, "--layers", "784-32-10", "--steps", "4000", "--checkpoint-every", "1000")
	c := newCluster(t, args...)
	coord := c.startCoordinator("coordinator-1")
	c.startWorkers(2)
	g := c.waitGeneration(30*time.Second, func(g cluster.Generation) bool { return len(g.Members) == 2 })
	c.waitStep(20, time.Minute)
	g = c.generation()
	const victim = "worker-1"

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	coords, err := c.run.Coordinators(ctx)
	if err != nil || len(coords) != 1 {
		cancel()
		t.Fatalf("coordinators %+v: %v", coords, err)
	}
	ws, err := c.run.Workers(ctx)
	cancel()
	if err != nil || len(ws) != 2 {
		t.Fatalf("workers %+v: %v", ws, err)
	}
	targets := []string{coords[0].Gossip}
	var victimGossip string
	for _, w := range ws {
		targets = append(targets, w.Gossip)
		if w.ID == victim {
			victimGossip = w.Gossip
		}
	}
	members := map[string]*proc{"coordinator-1": coord, "worker-1": c.workers["worker-1"], "worker-2": c.workers["worker-2"]}

	// (a), (b): no key.
	start := time.Now()
	out := runGossipRogue(t, gossipRogueSpec{Targets: targets, Victim: victim, Incarnation: 1 << 20})
	for _, name := range []string{"rogue-nokey", "rogue-otherkey"} {
		if !strings.Contains(out, "join "+name+": joined 0: ") || strings.Contains(out, "join "+name+": joined 0: <nil>") {
			t.Fatalf("%s was not refused by every member:\n%s", name, out)
		}
	}
	time.Sleep(2 * time.Second) // 40 gossip and 10 probe intervals
	for name, p := range members {
		for _, want := range []string{"Decrypt packet failed", "encryption is configured but remote state is not encrypted",
			"no installed keys could decrypt the message"} {
			if !logHas(t, p, want) {
				t.Errorf("%s's log has no %q: the rogue's traffic did not reach it, or was not refused for the key", name, want)
			}
		}
	}
	if logHas(t, c.workers[victim], "Refuting") {
		t.Errorf("%s refuted a rogue's message: a member acted on gossip without the key", victim)
	}
	for _, ev := range c.eventsSince(start) {
		switch ev.Kind {
		case "suspected", "failed", "left", "generation":
			t.Errorf("after the rogue without the key: event %+v", ev)
		}
	}
	if cur := c.generation(); cur.Gen != g.Gen {
		t.Fatalf("the generation changed under a rogue without the key: %v → %v", g, cur)
	}
	if t.Failed() {
		t.FailNow()
	}

	// The same forgeries under the run's key: failure detection acts on
	// them, and a "dead" alone evicts no one.
	for _, via := range []string{"udp", "tcp"} {
		c.notDone("the forgery under the run's key via " + via)
		since := time.Now()
		out := runGossipRogue(t, gossipRogueSpec{Targets: []string{coords[0].Gossip, victimGossip}, Victim: victim,
			Incarnation: map[string]uint32{"udp": 1 << 21, "tcp": 1 << 22}[via], KeyFile: c.dir + "/gossip.key", Via: via})
		if via == "tcp" && strings.Count(out, ": its state (push-pull accepted)") != 2 {
			t.Fatalf("with the run's key, the members did not answer the push-pull with their state:\n%s", out)
		}
		ev := c.waitEvent("suspected", victim, since, 10*time.Second)
		t.Logf("%s with the key: %+v", via, ev)
		c.waitEvent("recovered", victim, since, 10*time.Second)
		if cur := c.generation(); cur.Gen != g.Gen {
			t.Fatalf("gossip's dead (%s, with the key) alone changed the generation: %v → %v", via, g, cur)
		}
	}
	if !logHas(t, c.workers[victim], "Refuting") {
		t.Errorf("%s never refuted the forgeries under the run's key", victim)
	}
	c.notDone("the rogue's last attempt")

	sum := c.waitDone(3 * time.Minute)
	if sum.Workers != 2 {
		t.Fatalf("the run ended with %d workers, want 2 (summary %+v)", sum.Workers, sum)
	}
	if cur := c.generation(); cur.Gen != g.Gen {
		t.Fatalf("the generation changed during the run: %v → %v", g, cur)
	}
	for _, ev := range c.eventsSince(start) {
		if ev.Kind == "failed" || ev.Kind == "generation" && ev.Gen != g.Gen {
			t.Errorf("event %+v: the rogue changed the ring", ev)
		}
	}
	c.checkStepLogs(1, sum.Step)
	c.checkExact(sum)
	t.Logf("the run took %v after the rogue's first attempt", time.Since(start).Round(time.Millisecond))
}
