package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hasidecar/hasidecar/internal/lab"
)

// needTool finds a Debian tool the suite pairs hasidecar with: a test
// without it fails under CI (.ci/run installs it) and is skipped elsewhere.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s missing (CI=true): apt-get install %s", name, pkg)
	}
	t.Skipf("%s missing: apt-get install %s", name, pkg)
	return ""
}

func freePortInt(t *testing.T) int {
	t.Helper()
	p, err := strconv.Atoi(freePort(t))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// haproxyPorts are the listeners of the test's HAProxy.
type haproxyPorts struct{ write, read, stats int }

// haproxyConfig is deploy/haproxy/haproxy.cfg for this lab: the same
// listeners, checks and timings, with the lab's nodes as servers, the
// listeners on loopback ports, the read check's lag limit set to lag, and
// the lines that need a system install (syslog, the haproxy user, daemon
// mode, the admin socket under /run) left out. It fails the test when the
// deploy file no longer has the shape it rewrites.
func haproxyConfig(t *testing.T, l *lab.Lab, p haproxyPorts, lag string) string {
	t.Helper()
	b, err := os.ReadFile("../deploy/haproxy/haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	var servers []string
	for _, n := range l.DataNodes() {
		servers = append(servers, fmt.Sprintf("    server %s %s:%d check port %d", n.Name, n.Host, n.PGPort, n.HTTPPort))
	}
	drop := regexp.MustCompile(`^\s*(log |user |group |daemon$|stats socket )`)
	binds := map[string]int{"bind *:5000": p.write, "bind *:5001": p.read, "bind *:7000": p.stats}
	seen := map[string]int{}
	var out []string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		line := sc.Text()
		trim := strings.TrimSpace(line)
		switch {
		case drop.MatchString(line):
			seen["dropped"]++
			continue
		case strings.HasPrefix(trim, "server "):
			if seen["server"]++; seen["server"]%3 == 1 { // one block of servers per listener
				out = append(out, servers...)
			}
			continue
		case binds[trim] != 0:
			seen[trim]++
			line = fmt.Sprintf("    bind 127.0.0.1:%d", binds[trim])
		case strings.HasPrefix(trim, "option httpchk GET /replica"):
			seen["replica check"]++
			line = "    option httpchk GET /replica?lag=" + lag
		}
		out = append(out, line)
	}
	for _, k := range []string{"bind *:5000", "bind *:5001", "bind *:7000", "replica check"} {
		if seen[k] != 1 {
			t.Fatalf("deploy/haproxy/haproxy.cfg: %q found %d times, want once (the test rewrites it)", k, seen[k])
		}
	}
	if seen["server"] != 6 || !strings.Contains(string(b), "option httpchk GET /primary") {
		t.Fatalf("deploy/haproxy/haproxy.cfg: want two listeners of 3 servers each checked with GET /primary and /replica (found %d server lines)", seen["server"])
	}
	return strings.Join(out, "\n") + "\n"
}

// startHAProxy checks and runs HAProxy in the foreground with cfg; it is
// stopped when the test ends.
func startHAProxy(t *testing.T, bin, cfg string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-c", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s\n%s", err, out, cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-db", "-f", path)
	logf, err := os.Create(filepath.Join(t.TempDir(), "haproxy.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		_ = logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("haproxy log:\n%s", b)
		}
	})
}

// haproxyStatus is each server's status ("UP", "DOWN", …) per listener, from
// the statistics page's CSV.
func haproxyStatus(statsPort int) (map[string]string, error) {
	body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/;csv", statsPort))
	if err != nil {
		return nil, err
	}
	rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, r := range rows {
		// # pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,...
		if len(r) > 17 && !strings.HasPrefix(r[0], "#") && r[1] != "FRONTEND" && r[1] != "BACKEND" {
			out[r[0]+"/"+r[1]] = r[17]
		}
	}
	return out, nil
}

// waitRouting waits until HAProxy has the primary alone UP for writes and
// exactly readUp UP for reads.
func waitRouting(t *testing.T, c *cluster, statsPort int, primary string, readUp []string) {
	t.Helper()
	eventually(t, 60*time.Second, fmt.Sprintf("HAProxy: writes to %s only, reads to %v only", primary, readUp), func() string {
		st, err := haproxyStatus(statsPort)
		if err != nil {
			return err.Error()
		}
		for _, n := range c.lab.DataNodes() {
			wantW, wantR := "DOWN", "DOWN"
			if n.Name == primary {
				wantW = "UP"
			}
			if slices.Contains(readUp, n.Name) {
				wantR = "UP"
			}
			if got := st["postgres_write/"+n.Name]; got != wantW {
				return fmt.Sprintf("postgres_write/%s is %q", n.Name, got)
			}
			if got := st["postgres_read/"+n.Name]; got != wantR {
				return fmt.Sprintf("postgres_read/%s is %q", n.Name, got)
			}
		}
		return ""
	})
}

// TestHAProxy: a real HAProxy configured from deploy/haproxy/ routes writes
// to the primary and, after the primary's host dies, to the new primary; it
// routes reads only to standbys, and not to one whose replay lags past the
// read check's limit.
func TestHAProxy(t *testing.T) {
	needPostgres(t)
	bin := needTool(t, "haproxy", "haproxy")
	c := newCluster(t, clusterOpts{standbys: 2, witness: true})
	c.start()
	v := c.waitHealthy(120 * time.Second)
	s := &started{cluster: c, primary: primaryName(v)}
	ports := haproxyPorts{write: freePortInt(t), read: freePortInt(t), stats: freePortInt(t)}
	startHAProxy(t, bin, haproxyConfig(t, c.lab, ports, "1MB"))
	via := func(port int) string {
		return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres connect_timeout=2 sslmode=disable", port)
	}
	portNode := map[int]string{}
	for _, n := range c.lab.DataNodes() {
		portNode[n.PGPort] = n.Name
	}
	// ask runs one statement over a fresh connection through HAProxy and
	// says which node answered and whether it is in recovery.
	ask := func(port int, sql string) (node string, inRecovery bool, err error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := c.connectDSN(ctx, via(port))
		if err != nil {
			return "", false, err
		}
		defer conn.Close(ctx)
		if sql != "" {
			if _, err := conn.Exec(ctx, sql); err != nil {
				return "", false, err
			}
		}
		var p int
		if err := conn.QueryRow(ctx, "SELECT current_setting('port')::int, pg_is_in_recovery()").Scan(&p, &inRecovery); err != nil {
			return "", false, err
		}
		return portNode[p], inRecovery, nil
	}

	var standbys []string
	for _, n := range c.lab.DataNodes() {
		if n.Name != s.primary {
			standbys = append(standbys, n.Name)
		}
	}
	// HAProxy counts a server UP until its checks say otherwise: wait for
	// the first checks.
	waitRouting(t, c, ports.stats, s.primary, standbys)
	c.exec(s.primary, "CREATE TABLE routed (id serial PRIMARY KEY, note text)")
	eventually(t, 30*time.Second, "a write through HAProxy's write port on "+s.primary, func() string {
		node, _, err := ask(ports.write, "INSERT INTO routed (note) VALUES ('before')")
		switch {
		case err != nil:
			return err.Error()
		case node != s.primary:
			return "answered by " + node
		}
		return ""
	})

	t.Run("reads go to standbys only, not to one lagging past the limit", func(t *testing.T) {
		seen := map[string]int{}
		eventually(t, 30*time.Second, "reads through HAProxy on both standbys", func() string {
			node, rec, err := ask(ports.read, "")
			if err != nil {
				return err.Error()
			}
			if !rec {
				t.Fatalf("a read through HAProxy's read port reached %s, which is not in recovery", node)
			}
			seen[node]++
			if len(seen) < 2 {
				return fmt.Sprintf("only %v so far", seen)
			}
			return ""
		})
		lagging, other := standbys[0], standbys[1]
		c.exec(lagging, "SELECT pg_wal_replay_pause()")
		defer c.exec(lagging, "SELECT pg_wal_replay_resume()")
		// About 6 MB of WAL: past the 1MB limit once the primary's next
		// lease renewal carries its flush position.
		c.exec(s.primary, "INSERT INTO routed (note) SELECT repeat('x', 1000) FROM generate_series(1, 5000)")
		t.Logf("%s's replay paused, 6 MB written on %s", lagging, s.primary)
		start := time.Now()
		waitRouting(t, c, ports.stats, s.primary, []string{other})
		t.Logf("HAProxy took the lagging %s out of the reads %s after the write", lagging, time.Since(start).Round(100*time.Millisecond))
		streak := 0
		eventually(t, 60*time.Second, "20 reads in a row on "+other, func() string {
			node, rec, err := ask(ports.read, "")
			switch {
			case err != nil:
				streak = 0
				return err.Error()
			case !rec:
				t.Fatalf("a read reached %s, which is not in recovery", node)
			case node != other:
				streak = 0
				return "a read on " + node
			}
			if streak++; streak < 20 {
				return fmt.Sprintf("%d reads in a row on %s", streak, other)
			}
			return ""
		})
		c.exec(lagging, "SELECT pg_wal_replay_resume()")
		waitRouting(t, c, ports.stats, s.primary, standbys)
		t.Logf("%s back in the reads once its replay resumed", lagging)
	})

	t.Run("writes follow a failover", func(t *testing.T) {
		old := s.primary
		killed := time.Now()
		c.lab.KillHost(c.node(old))
		var np string
		eventually(t, 60*time.Second, "a write through HAProxy on a new primary", func() string {
			node, rec, err := ask(ports.write, "INSERT INTO routed (note) VALUES ('after')")
			switch {
			case err != nil:
				return err.Error()
			case rec || node == old:
				return "answered by " + node
			}
			np = node
			return ""
		})
		t.Logf("first write through HAProxy on the new primary %s %s after %s's host was killed", np, time.Since(killed).Round(10*time.Millisecond), old)
		for i := 0; i < 10; i++ {
			node, rec, err := ask(ports.write, "INSERT INTO routed (note) VALUES ('after')")
			if err != nil || rec || node != np {
				t.Fatalf("write %d through HAProxy after the failover: node %s in recovery %v: %v", i, node, rec, err)
			}
		}
	})
}
