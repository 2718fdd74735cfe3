// Package lab starts a whole hasidecar cluster on one machine: a primary,
// standbys and an optional witness, each a real `hasidecar agent` process
// with its own config, data directory and log under one directory, all on
// loopback. `hasidecar lab`, `make demo`, the integration tests and the
// benchmarks use it.
package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/internal/statelock"
	"github.com/hasidecar/hasidecar/pgctl"
)

// AgentGOMAXPROCS is the GOMAXPROCS the lab gives its sidecars unless its
// own environment sets one (deploy/systemd/hasidecar.service sets the same):
// the sidecar's work is small network and Postgres round trips, and with one
// P the thread woken in epoll runs the goroutine itself. bench/idle, a lab
// at rest, back to back (2026-12-02): 9.67 % of one core in all with 2 (this
// machine's default), 7.10 % with 1. Set in the environment, not with
// runtime.GOMAXPROCS from main: that measured no gain (docs/NOTES.md).
const AgentGOMAXPROCS = "1"

// Port offsets from the base port: node i (0 = pg1) listens on base+i for
// Postgres, base+20+i for gRPC, base+40+i for Raft, base+60+i for HTTP.
const (
	offGRPC     = 20
	offRaft     = 40
	offHTTP     = 60
	maxNodes    = 20
	DefaultPort = 55160
)

// Spec describes a lab.
type Spec struct {
	Dir      string
	Standbys int
	Witness  bool
	BasePort int
	// Binary is the hasidecar executable to run (default: this one).
	Binary string
	// Tune, when set, adjusts every node's config before it is written.
	Tune func(*config.Config)
	// Net, when set, gives every node a network namespace of its own (see
	// netns.go); New creates them, TeardownNet deletes them.
	Net *Net
}

// Node is one member of a lab.
type Node struct {
	Name       string
	Host       string // its address: 127.0.0.1, or its namespace's address
	Witness    bool
	Dir        string
	ConfigPath string
	LogPath    string
	PGPort     int
	GRPCPort   int
	RaftPort   int
	HTTPPort   int
	Config     *config.Config
}

// GRPCAddr is the node's sidecar address.
func (n *Node) GRPCAddr() string { return net.JoinHostPort(n.Host, strconv.Itoa(n.GRPCPort)) }

// addr is host:port on the node's address.
func (n *Node) addr(port int) string { return net.JoinHostPort(n.Host, strconv.Itoa(port)) }

// Lab is a described (and perhaps running) lab.
type Lab struct {
	Spec  Spec
	Nodes []*Node
}

// New lays out the lab's nodes and configs; it writes nothing.
func New(spec Spec) (*Lab, error) {
	if spec.Dir == "" {
		spec.Dir = "lab"
	}
	dir, err := filepath.Abs(spec.Dir)
	if err != nil {
		return nil, fmt.Errorf("lab dir %s: %w", spec.Dir, err)
	}
	spec.Dir = dir
	if spec.BasePort == 0 {
		spec.BasePort = DefaultPort
	}
	if spec.Standbys < 0 || spec.Standbys+2 > maxNodes {
		return nil, fmt.Errorf("--standbys must be between 0 and %d, not %d", maxNodes-2, spec.Standbys)
	}
	if spec.BasePort < 1024 || spec.BasePort+offHTTP+maxNodes > 65535 {
		return nil, fmt.Errorf("--base-port must be between 1024 and %d, not %d", 65535-offHTTP-maxNodes, spec.BasePort)
	}
	if spec.Binary == "" {
		if spec.Binary, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("find the hasidecar binary: %w", err)
		}
	}
	l := &Lab{Spec: spec}
	for i := 0; i <= spec.Standbys; i++ {
		l.Nodes = append(l.Nodes, l.node(fmt.Sprintf("pg%d", i+1), i, false))
	}
	if spec.Witness {
		l.Nodes = append(l.Nodes, l.node("witness", spec.Standbys+1, true))
	}
	if spec.Net != nil {
		var names []string
		for _, n := range l.Nodes {
			names = append(names, n.Name)
		}
		if err := spec.Net.Setup(names); err != nil {
			_ = spec.Net.Teardown()
			return nil, fmt.Errorf("network namespaces: %w", err)
		}
		for _, n := range l.Nodes {
			n.Host = spec.Net.IP(n.Name)
		}
	}
	for i, n := range l.Nodes {
		// Every other member is a way in: a node can join while any
		// member is up (pg1 bootstraps the cluster on first start).
		var join []string
		for _, o := range l.Nodes {
			if o != n {
				join = append(join, o.GRPCAddr())
			}
		}
		n.Config = l.config(n, i == 0, join)
	}
	return l, nil
}

func (l *Lab) node(name string, i int, witness bool) *Node {
	dir := filepath.Join(l.Spec.Dir, name)
	return &Node{
		Name: name, Witness: witness, Dir: dir, Host: "127.0.0.1",
		ConfigPath: filepath.Join(dir, "hasidecar.yaml"), LogPath: filepath.Join(dir, "hasidecar.log"),
		PGPort: l.Spec.BasePort + i, GRPCPort: l.Spec.BasePort + offGRPC + i,
		RaftPort: l.Spec.BasePort + offRaft + i, HTTPPort: l.Spec.BasePort + offHTTP + i,
	}
}

// config is a lab node's config: loopback everywhere, trust authentication
// on loopback (a lab only), defaults for every timing.
func (l *Lab) config(n *Node, bootstrap bool, join []string) *config.Config {
	c := &config.Config{
		Cluster:   labCluster,
		Name:      n.Name,
		Kind:      config.KindData,
		StateDir:  filepath.Join(n.Dir, "state"),
		Location:  "lab",
		Priority:  config.DefaultPriority,
		Bootstrap: bootstrap,
		Raft:      config.RaftConfig{Listen: n.addr(n.RaftPort)},
		GRPC:      config.ListenConfig{Listen: n.GRPCAddr()},
		HTTP:      config.HTTPConfig{Listen: n.addr(n.HTTPPort)},
		Timing:    config.TimingConfig{DriftMarginPercent: config.DefaultDriftMarginPercent},
		Events:    config.EventsConfig{MaxAge: config.DefaultEventsMaxAge},
		// A sample a second: the lab's history shows something at once.
		Monitoring: config.MonitoringConfig{HistoryInterval: config.Duration(time.Second)},
	}
	if !bootstrap {
		c.Join = join
	}
	if n.Witness {
		c.Kind = config.KindWitness
		c.Location = "lab-witness"
	} else {
		c.Postgres = &config.PostgresConfig{
			DataDir:         filepath.Join(n.Dir, "data"),
			Host:            n.Host,
			Port:            n.PGPort,
			AuthMethod:      "trust",
			AllowedNetworks: []string{"127.0.0.1/32"},
			LogFile:         filepath.Join(n.Dir, "postgres.log"),
			RestartTimeout:  config.DefaultRestartTimeout,
		}
		if os.Geteuid() != 0 {
			if u := os.Getenv("USER"); u != "" {
				c.Postgres.OSUser = u
			}
		}
	}
	l.SetTLS(c)
	c.ApplyDefaults()
	if l.Spec.Net != nil && c.Postgres != nil {
		c.Postgres.AllowedNetworks = []string{l.Spec.Net.Subnet()}
	}
	if l.Spec.Tune != nil {
		l.Spec.Tune(c)
		c.ApplyDefaults()
	}
	return c
}

// ReservePorts keeps the kernel from handing the lab's ports to outgoing
// connections as their local (ephemeral) port: a Postgres that starts after
// a sidecar's connection took its port would fail to bind. It needs root and
// changes only net.ipv4.ip_local_reserved_ports (adds the lab's range); it
// reports what it did, or why not.
func (l *Lab) ReservePorts() string {
	const path = "/proc/sys/net/ipv4/ip_local_reserved_ports"
	lo, hi := l.Spec.BasePort, l.Spec.BasePort+offHTTP+maxNodes-1
	lowEph, highEph := 32768, 60999
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			lowEph, _ = strconv.Atoi(f[0])
			highEph, _ = strconv.Atoi(f[1])
		}
	}
	if hi < lowEph || lo > highEph {
		return ""
	}
	cur, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	want := fmt.Sprintf("%d-%d", lo, hi)
	if strings.Contains(string(cur), want) {
		return ""
	}
	if os.Geteuid() != 0 {
		return fmt.Sprintf("note: ports %s lie in the kernel's ephemeral range; as root the lab would reserve them (%s)", want, path)
	}
	list := strings.TrimSpace(string(cur))
	if list != "" {
		list += ","
	}
	if err := os.WriteFile(path, []byte(list+want), 0o644); err != nil {
		return fmt.Sprintf("note: could not reserve ports %s in %s: %v", want, path, err)
	}
	return fmt.Sprintf("reserved ports %s for the lab (%s), so that no outgoing connection takes them", want, path)
}

// Write creates the lab's directories and config files (0755 dirs so that
// the postgres OS user can reach its data directory).
func (l *Lab) Write() error {
	if err := os.MkdirAll(l.Spec.Dir, 0o755); err != nil {
		return fmt.Errorf("create lab dir: %w", err)
	}
	_ = os.Chmod(l.Spec.Dir, 0o755)
	if l.credentialsNeeded() {
		if err := l.writeCerts(); err != nil {
			return err
		}
	}
	for _, n := range l.Nodes {
		if err := n.Config.Validate(); err != nil {
			return fmt.Errorf("lab config of %s: %w", n.Name, err)
		}
		if err := os.MkdirAll(n.Dir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", n.Dir, err)
		}
		b, err := n.Config.Marshal()
		if err != nil {
			return err
		}
		header := fmt.Sprintf("# hasidecar lab node %s: run it with `hasidecar agent -c %s`\n", n.Name, n.ConfigPath)
		if err := os.WriteFile(n.ConfigPath, append([]byte(header), b...), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", n.ConfigPath, err)
		}
	}
	return nil
}

func (n *Node) pidPath() string { return filepath.Join(n.Dir, "hasidecar.pid") }

// PID is the running sidecar's pid, 0 when it is not running: the one the
// lab started (its pid file), else whichever agent holds the node's
// state_dir lock (one started by hand with the node's config).
func (n *Node) PID() int {
	if b, err := os.ReadFile(n.pidPath()); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 && alive(pid) {
			return pid
		}
	}
	if pid := statelock.Holder(n.Config.StateDir); pid > 0 && alive(pid) {
		return pid
	}
	return 0
}

// PostmasterPID is the pid in the data directory's postmaster.pid when that
// process is alive, else 0.
func (n *Node) PostmasterPID() int {
	if n.Config.Postgres == nil {
		return 0
	}
	b, err := os.ReadFile(filepath.Join(n.Config.Postgres.DataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 || !alive(pid) {
		return 0
	}
	return pid
}

// Alive reports whether pid is a live (not zombie) process.
func Alive(pid int) bool { return alive(pid) }

func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	// A zombie is not alive.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	if i := strings.LastIndexByte(string(b), ')'); i > 0 && i+2 < len(b) {
		return b[i+2] != 'Z'
	}
	return true
}

// Start runs the node's sidecar in its own session, its output appended to
// its log; it returns once the process is started.
func (l *Lab) Start(n *Node) error {
	if pid := n.PID(); pid != 0 {
		return fmt.Errorf("%s is already running (pid %d)", n.Name, pid)
	}
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", n.LogPath, err)
	}
	defer logf.Close()
	cmd := exec.Command(l.Spec.Binary, "agent", "-c", n.ConfigPath)
	if l.Spec.Net != nil {
		cmd = l.Spec.Net.Command(n.Name, l.Spec.Binary, "agent", "-c", n.ConfigPath)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if os.Getenv("GOMAXPROCS") == "" {
		cmd.Env = append(os.Environ(), "GOMAXPROCS="+AgentGOMAXPROCS)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", n.Name, err)
	}
	pid := cmd.Process.Pid
	if err := os.WriteFile(n.pidPath(), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return err
	}
	// Reap it in the background when this process outlives it (tests).
	go func() { _ = cmd.Wait() }()
	return nil
}

// Stop sends SIGTERM (a clean leave) and waits; after timeout, SIGKILL.
func (l *Lab) Stop(n *Node, timeout time.Duration) error {
	pid := n.PID()
	if pid == 0 {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			_ = os.Remove(n.pidPath())
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	l.killPostgres(n)
	_ = os.Remove(n.pidPath())
	return fmt.Errorf("%s did not stop within %s: killed", n.Name, timeout)
}

// KillHost is the death of the node's whole host: SIGKILL of the sidecar
// and of Postgres's process group at the same moment.
func (l *Lab) KillHost(n *Node) {
	pm := n.PostmasterPID()
	pid := n.PID()
	if pid != 0 {
		_ = syscall.Kill(pid, syscall.SIGSTOP) // no reaction from it from here on
	}
	pgctl.KillTree(pm)
	if pid != 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	_ = os.Remove(n.pidPath())
}

// FreezeHost stops (SIGSTOP) the node's sidecar, Postgres and every process
// under them at once: from here on none of them sends or answers anything,
// though the kernel still holds their sockets. A bench freezes a host before
// it blackholes its network and kills it, so that the death is one moment.
func (l *Lab) FreezeHost(n *Node) {
	var pids []int
	for _, root := range []int{n.PID(), n.PostmasterPID()} {
		if root > 0 {
			pids = append(append(pids, root), pgctl.Descendants(root)...)
		}
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGSTOP)
	}
}

// KillSidecar kills only the sidecar process (SIGKILL).
func (l *Lab) KillSidecar(n *Node) {
	if pid := n.PID(); pid != 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// KillPostgres kills only the postmaster (SIGKILL); its backends notice and
// exit.
func (l *Lab) KillPostgres(n *Node) {
	if pm := n.PostmasterPID(); pm != 0 {
		_ = syscall.Kill(pm, syscall.SIGKILL)
	}
}

func (l *Lab) killPostgres(n *Node) {
	pgctl.KillTree(n.PostmasterPID())
}

// Down stops every node it finds running (SIGTERM, then SIGKILL), witnesses
// and standbys before the primary is not needed: each sidecar leaves
// cleanly on its own.
func (l *Lab) Down(timeout time.Duration) error {
	var errs []error
	for _, n := range l.Nodes {
		if pid := n.PID(); pid != 0 {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
	}
	for _, n := range l.Nodes {
		if err := l.Stop(n, timeout); err != nil {
			errs = append(errs, err)
		}
		l.killPostgres(n)
	}
	return errors.Join(errs...)
}

// Running lists the nodes whose sidecar runs.
func (l *Lab) Running() []*Node {
	var out []*Node
	for _, n := range l.Nodes {
		if n.PID() != 0 {
			out = append(out, n)
		}
	}
	return out
}

// Node returns the member with this name, or nil.
func (l *Lab) Node(name string) *Node {
	for _, n := range l.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// DataNodes are the members with Postgres.
func (l *Lab) DataNodes() []*Node {
	var out []*Node
	for _, n := range l.Nodes {
		if !n.Witness {
			out = append(out, n)
		}
	}
	return out
}

// MultiHostDSN is the libpq string a client uses to reach whichever node is
// writable.
func (l *Lab) MultiHostDSN(extra string) string {
	var hosts, ports []string
	for _, n := range l.DataNodes() {
		hosts = append(hosts, n.Host)
		ports = append(ports, strconv.Itoa(n.PGPort))
	}
	dsn := fmt.Sprintf("host=%s port=%s user=postgres dbname=postgres target_session_attrs=read-write connect_timeout=2 sslmode=disable", strings.Join(hosts, ","), strings.Join(ports, ","))
	if extra != "" {
		dsn += " " + extra
	}
	return dsn
}

// credentialsNeeded: some node runs mutual TLS.
func (l *Lab) credentialsNeeded() bool {
	for _, n := range l.Nodes {
		if n.Config.TLS.Enabled() {
			return true
		}
	}
	return false
}

// Load reads a lab written earlier from its directory.
func Load(dir string) (*Lab, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		return nil, fmt.Errorf("no lab in %s: %w (start one with `hasidecar lab up`)", abs, err)
	}
	l := &Lab{Spec: Spec{Dir: abs}}
	l.Spec.Binary, _ = os.Executable()
	for _, e := range entries {
		path := filepath.Join(abs, e.Name(), "hasidecar.yaml")
		if !e.IsDir() {
			continue
		}
		if _, err := os.Stat(path); err != nil {
			continue
		}
		c, err := config.Load(path)
		if err != nil {
			return nil, err
		}
		n := &Node{Name: c.Name, Host: "127.0.0.1", Witness: c.IsWitness(), Dir: filepath.Join(abs, e.Name()), ConfigPath: path,
			LogPath: filepath.Join(abs, e.Name(), "hasidecar.log"), Config: c}
		if c.Postgres != nil {
			n.PGPort = c.Postgres.Port
		}
		n.GRPCPort = portOf(c.GRPC.Listen)
		n.RaftPort = portOf(c.Raft.Listen)
		n.HTTPPort = portOf(c.HTTP.Listen)
		l.Nodes = append(l.Nodes, n)
	}
	if len(l.Nodes) == 0 {
		return nil, fmt.Errorf("no lab in %s (start one with `hasidecar lab up`)", abs)
	}
	return l, nil
}

func portOf(addr string) int {
	i := strings.LastIndexByte(addr, ':')
	p, _ := strconv.Atoi(addr[i+1:])
	return p
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
