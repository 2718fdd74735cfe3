package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Net puts every lab node on a host of its own: one network namespace per
// node, all on a bridge inside a "hub" namespace, plus a "client"
// namespace from which tests connect. Everything lives in namespaces this
// lab creates (nothing is addressed in the machine's own namespace), and
// Teardown deletes them all. Partitions are nftables rules inside a node's
// namespace. Needs root, iproute2 and nftables.
type Net struct {
	run    string // run id in every name
	prefix string // "10.A.B." of the lab's /24
	ips    map[string]string
	ports  map[string]string // node → its veth end on the hub's bridge
	ns     []string
}

// ClientIP is the address tests connect from.
const clientHost = 2

// NewNet picks a run id and a private /24 for a lab's namespaces.
func NewNet() (*Net, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("network namespaces need root")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s is missing: install iproute2 and nftables", tool)
		}
	}
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	a, _ := rand.Int(rand.Reader, big.NewInt(50))
	c, _ := rand.Int(rand.Reader, big.NewInt(250))
	return &Net{run: hex.EncodeToString(b), prefix: fmt.Sprintf("10.%d.%d.", 200+a.Int64(), c.Int64()), ips: map[string]string{}, ports: map[string]string{}}, nil
}

func (n *Net) nsName(node string) string { return "hsd" + n.run + "-" + node }

// Namespace is the name of a node's (or "client"'s) namespace.
func (n *Net) Namespace(node string) string { return n.nsName(node) }

// IP of a node (or "client").
func (n *Net) IP(node string) string { return n.ips[node] }

// Subnet is the lab's /24 in CIDR form.
func (n *Net) Subnet() string { return n.prefix + "0/24" }

func ipcmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Setup creates the hub with its bridge, and a namespace with one address
// for the client and for every node, in order (node i gets .10+i).
func (n *Net) Setup(nodes []string) error {
	hub := n.nsName("hub")
	if err := ipcmd("netns", "add", hub); err != nil {
		return err
	}
	n.ns = append(n.ns, hub)
	if err := ipcmd("-n", hub, "link", "add", "br0", "type", "bridge"); err != nil {
		return err
	}
	if err := ipcmd("-n", hub, "link", "set", "br0", "up"); err != nil {
		return err
	}
	all := append([]string{"client"}, nodes...)
	for i, name := range all {
		host := 10 + i - 1
		if name == "client" {
			host = clientHost
		}
		ip := fmt.Sprintf("%s%d", n.prefix, host)
		ns := n.nsName(name)
		if err := ipcmd("netns", "add", ns); err != nil {
			return err
		}
		n.ns = append(n.ns, ns)
		port := fmt.Sprintf("p%s%d", n.run, i)
		steps := [][]string{
			{"-n", hub, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns},
			{"-n", hub, "link", "set", port, "master", "br0", "up"},
			{"-n", ns, "addr", "add", ip + "/24", "dev", "eth0"},
			{"-n", ns, "link", "set", "eth0", "up"},
			{"-n", ns, "link", "set", "lo", "up"},
		}
		for _, s := range steps {
			if err := ipcmd(s...); err != nil {
				return err
			}
		}
		n.ips[name] = ip
		n.ports[name] = port
	}
	return nil
}

// Slow limits node's link, both ways, to rate (tc tbf, e.g. "256kbit";
// netem is missing on this kernel): a slow or congested link rather than
// a cut one. Fast lifts it.
func (n *Net) Slow(node, rate string) error {
	tbf := []string{"root", "tbf", "rate", rate, "burst", "16kb", "latency", "500ms"}
	if err := tcIn(n.nsName(node), append([]string{"qdisc", "replace", "dev", "eth0"}, tbf...)...); err != nil {
		return fmt.Errorf("slow %s: %w", node, err)
	}
	if err := tcIn(n.nsName("hub"), append([]string{"qdisc", "replace", "dev", n.ports[node]}, tbf...)...); err != nil {
		return fmt.Errorf("slow %s: %w", node, err)
	}
	return nil
}

// Fast removes Slow's limits (no error when there are none).
func (n *Net) Fast(node string) error {
	for _, dev := range [][2]string{{n.nsName(node), "eth0"}, {n.nsName("hub"), n.ports[node]}} {
		err := tcIn(dev[0], "qdisc", "del", "dev", dev[1], "root")
		if err != nil && !strings.Contains(err.Error(), "No such file") && !strings.Contains(err.Error(), "Cannot delete qdisc with handle of zero") {
			return fmt.Errorf("lift the limit on %s: %w", node, err)
		}
	}
	return nil
}

// tcIn runs tc inside a namespace.
func tcIn(ns string, args ...string) error {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "tc"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("tc %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Teardown deletes every namespace (their links go with them).
func (n *Net) Teardown() error {
	var errs []error
	for i := len(n.ns) - 1; i >= 0; i-- {
		if err := ipcmd("netns", "del", n.ns[i]); err != nil {
			errs = append(errs, err)
		}
	}
	n.ns = nil
	return errors.Join(errs...)
}

// Command runs argv inside a node's (or the client's) namespace.
func (n *Net) Command(node string, argv ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.nsName(node)}, argv...)...)
}

// DialContext opens a connection from the client namespace: the socket is
// created on a thread that entered that namespace, then used anywhere.
func (n *Net) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// The thread stays locked and is thrown away when this goroutine
		// ends: it never returns to the pool in the other namespace.
		runtime.LockOSThread()
		f, err := os.Open("/var/run/netns/" + n.nsName("client"))
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("enter the client namespace: %w", err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// Partition drops, inside node's namespace, all traffic to and from the
// given nodes (in both directions); the client and everyone else still
// reach it. Heal removes it.
func (n *Net) Partition(node string, from ...string) error {
	return n.filter(node, "drop", true, true, from)
}

// PartitionInbound drops, inside node's namespace, only the packets that
// arrive from the given nodes: node still sends to them (an asymmetric
// partition: its votes and requests go out, no answer comes back).
func (n *Net) PartitionInbound(node string, from ...string) error {
	return n.filter(node, "drop", true, false, from)
}

// Loss drops, inside node's namespace, about percent % of the packets to
// and from the given nodes (nft numgen: tc netem is missing on this
// kernel). It replaces any partition of node; Heal removes it.
func (n *Net) Loss(node string, percent int, from ...string) error {
	if percent < 1 || percent > 100 {
		return fmt.Errorf("loss in %s: %d%% is not a percentage", node, percent)
	}
	return n.filter(node, fmt.Sprintf("numgen random mod 100 < %d drop", percent), true, true, from)
}

// filter replaces node's rules with one verdict on traffic with the given
// nodes, inbound and/or outbound.
func (n *Net) filter(node, verdict string, inbound, outbound bool, from []string) error {
	var ips []string
	for _, f := range from {
		ips = append(ips, n.ips[f])
	}
	set := "{ " + strings.Join(ips, ", ") + " }"
	rules := "table inet hasidecar_lab {\n"
	if inbound {
		rules += fmt.Sprintf("\tchain in { type filter hook input priority 0; ip saddr %s %s; }\n", set, verdict)
	}
	if outbound {
		rules += fmt.Sprintf("\tchain out { type filter hook output priority 0; ip daddr %s %s; }\n", set, verdict)
	}
	rules += "}\n"
	return n.apply(node, rules)
}

// apply replaces node's rules with the given nft table.
func (n *Net) apply(node, rules string) error {
	_ = n.Heal(node)
	cmd := n.Command(node, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %v: %s", node, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Blackhole drops, inside node's namespace, every packet in and out of its
// network interface, as when a host loses power: peers and clients see
// time-outs, not refused connections or resets (the kernel's replies to
// the dead host's closed sockets are dropped too). Heal removes it.
func (n *Net) Blackhole(node string) error {
	rules := "table inet hasidecar_lab {\n" +
		"\tchain in { type filter hook input priority 0; iifname != \"lo\" drop; }\n" +
		"\tchain out { type filter hook output priority 0; oifname != \"lo\" drop; }\n" +
		"}\n"
	return n.apply(node, rules)
}

// Heal removes node's partition rules.
func (n *Net) Heal(node string) error {
	out, err := n.Command(node, "nft", "delete", "table", "inet", "hasidecar_lab").CombinedOutput()
	if err != nil && !strings.Contains(string(out), "No such file") {
		return fmt.Errorf("nft in %s: %v: %s", node, err, strings.TrimSpace(string(out)))
	}
	return nil
}
