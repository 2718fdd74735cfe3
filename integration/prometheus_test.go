package integration

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape fetches a node's /metrics.
func scrape(t *testing.T, c *cluster, node string) ([]byte, error) {
	t.Helper()
	n := c.node(node)
	return httpGet(fmt.Sprintf("http://%s:%d/metrics", n.Host, n.HTTPPort))
}

// metricValue is the value of the one series of name in an exposition (of
// a histogram: its sample count).
func metricValue(body []byte, name string) (float64, bool) {
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return 0, false
	}
	mf, ok := mfs[name]
	if !ok || len(mf.GetMetric()) != 1 {
		return 0, false
	}
	m := mf.GetMetric()[0]
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue(), true
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue(), true
	case m.GetHistogram() != nil:
		return float64(m.GetHistogram().GetSampleCount()), true
	}
	return 0, false
}

// TestPrometheusMetrics: every node's /metrics passes Prometheus's own
// linter (promtool check metrics, Debian's prometheus package), and scraped
// across a failover the term and the failover counter move while exactly
// one node reports hasidecar_postgres_primary 1, before and after.
func TestPrometheusMetrics(t *testing.T) {
	needPostgres(t)
	promtool := needTool(t, "promtool", "prometheus")
	c := newCluster(t, clusterOpts{standbys: 2, witness: true})
	c.start()
	v := c.waitHealthy(120 * time.Second)
	s := &started{cluster: c, primary: primaryName(v)}

	type sample struct{ term, failovers, primary float64 }
	// scrapeAll waits until every listed node's metrics agree with the
	// state wanted, and returns them.
	scrapeAll := func(nodes []string, ok func(map[string]sample) string) map[string]sample {
		var got map[string]sample
		eventually(t, 30*time.Second, "metrics on "+strings.Join(nodes, ", "), func() string {
			got = map[string]sample{}
			for _, n := range nodes {
				body, err := scrape(t, c, n)
				if err != nil {
					return err.Error()
				}
				var sm sample
				var found bool
				if sm.term, found = metricValue(body, "hasidecar_voting_term"); !found {
					return n + ": no hasidecar_voting_term"
				}
				if sm.failovers, found = metricValue(body, "hasidecar_failovers_total"); !found {
					return n + ": no hasidecar_failovers_total"
				}
				sm.primary, _ = metricValue(body, "hasidecar_postgres_primary")
				got[n] = sm
			}
			return ok(got)
		})
		return got
	}
	onePrimary := func(term uint64, want string) func(map[string]sample) string {
		return func(m map[string]sample) string {
			var primaries []string
			for n, sm := range m {
				if sm.term != float64(term) {
					return fmt.Sprintf("%s: hasidecar_voting_term %v, the cluster's term is %d", n, sm.term, term)
				}
				if sm.primary == 1 {
					primaries = append(primaries, n)
				}
			}
			if len(primaries) != 1 || primaries[0] != want {
				return fmt.Sprintf("hasidecar_postgres_primary 1 on %v, want %s alone", primaries, want)
			}
			return ""
		}
	}

	all := []string{"pg1", "pg2", "pg3", "witness"}
	for _, n := range all {
		body, err := scrape(t, c, n)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics on %s's /metrics: %v\n%s", n, err, out)
		}
	}
	// The Raft leader times its decision passes (at least one every 100 ms).
	if body, err := scrape(t, c, v.RaftLeader); err != nil {
		t.Fatal(err)
	} else if n, ok := metricValue(body, "hasidecar_decision_loop_seconds"); !ok || n == 0 {
		t.Errorf("the Raft leader %s: hasidecar_decision_loop_seconds counts %v passes (present %v), want some", v.RaftLeader, n, ok)
	}
	before := scrapeAll(all, onePrimary(v.Term, s.primary))
	t.Logf("before: term %d, primary %s, %v", v.Term, s.primary, before)

	old := s.primary
	c.lab.KillHost(c.node(old))
	np := s.waitNewPrimary(old, 60*time.Second)
	var term uint64
	eventually(t, 30*time.Second, "a term after "+fmt.Sprint(v.Term), func() string {
		r, err := c.show(np)
		switch {
		case err != nil:
			return err.Error()
		case r.Term <= v.Term:
			return fmt.Sprintf("term %d", r.Term)
		}
		term = r.Term
		return ""
	})
	var survivors []string
	for _, n := range all {
		if n != old {
			survivors = append(survivors, n)
		}
	}
	after := scrapeAll(survivors, func(m map[string]sample) string {
		if why := onePrimary(term, np)(m); why != "" {
			return why
		}
		for n, sm := range m {
			if sm.failovers < before[n].failovers+1 {
				return fmt.Sprintf("%s: hasidecar_failovers_total %v, was %v", n, sm.failovers, before[n].failovers)
			}
		}
		return ""
	})
	t.Logf("after: term %d, primary %s, %v", term, np, after)
}
