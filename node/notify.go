package node

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// The optional event_command runs for every event about this node (and, on
// the Raft leader, for cluster-wide events), like repmgr's
// event_notification_command. Placeholders in the command:
//
//	%n node id   %a node name   %e event type   %s success (1 or 0)
//	%t timestamp (RFC 3339)     %d details      %T term   %c cluster   %% a percent sign
//
// Each value is substituted shell-quoted, and the command runs with /bin/sh
// -c. The same values are in the environment as HASIDECAR_NODE_ID,
// HASIDECAR_NODE_NAME, HASIDECAR_EVENT, HASIDECAR_SUCCESS,
// HASIDECAR_TIMESTAMP, HASIDECAR_DETAILS, HASIDECAR_TERM and
// HASIDECAR_CLUSTER. It runs with a timeout (event_command_timeout) on a
// queue of its own: a slow or failing command is logged and never delays a
// failover. The command and its timeout are live keys: a reload (SIGHUP)
// changes them for the next event; "" notifies nothing.

func (n *Node) notifyLoop(ctx context.Context) {
	queue := make(chan *pb.Event, 256)
	// The runner joins the shutdown wait group; it ends once the queue is
	// closed and drained (with ctx ended, each command is cut short).
	n.goLoop(func() {
		for e := range queue {
			n.runEventCommand(ctx, e)
		}
	})
	defer close(queue)
	next := n.fsm.State().NextEventId // events before the start are not replayed
	for {
		st := n.fsm.State()
		me := n.ID()
		for _, e := range st.Events {
			if e.Id < next {
				continue
			}
			next = e.Id + 1
			if n.conf().EventCommand == "" {
				continue
			}
			if (me != 0 && e.NodeId == me) || (e.NodeId == 0 && n.isLeader()) {
				select {
				case queue <- e:
				default:
					n.logger.Warn("event_command queue full: event not notified", "event", e.Type, "id", e.Id)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-n.fsm.Changed():
		}
	}
}

func (n *Node) runEventCommand(ctx context.Context, e *pb.Event) {
	live := n.conf()
	if live.EventCommand == "" {
		return // removed by a reload while the event was queued
	}
	vals := eventValues(n.cfg.Cluster, e)
	cmdline := expandPlaceholders(live.EventCommand, vals)
	cctx, cancel := context.WithTimeout(ctx, live.EventCommandTimeout.D())
	defer cancel()
	cmd := exec.CommandContext(cctx, "/bin/sh", "-c", cmdline)
	cmd.Env = os.Environ()
	for _, k := range []struct{ env, key string }{{"NODE_ID", "n"}, {"NODE_NAME", "a"}, {"EVENT", "e"}, {"SUCCESS", "s"}, {"TIMESTAMP", "t"}, {"DETAILS", "d"}, {"TERM", "T"}, {"CLUSTER", "c"}} {
		cmd.Env = append(cmd.Env, "HASIDECAR_"+k.env+"="+vals[k.key])
	}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		n.logger.Warn("event_command failed", "event", e.Type, "error", err, "took", time.Since(start).Round(time.Millisecond), "output", strings.TrimSpace(string(out)))
		return
	}
	n.logger.Debug("event_command done", "event", e.Type, "took", time.Since(start).Round(time.Millisecond))
}

func eventValues(cluster string, e *pb.Event) map[string]string {
	success := "0"
	if e.Ok {
		success = "1"
	}
	return map[string]string{
		"n": strconv.FormatUint(uint64(e.NodeId), 10), "a": e.NodeName, "e": e.Type, "s": success,
		"t": time.UnixMilli(e.TimestampUnixMs).UTC().Format(time.RFC3339Nano), "d": e.Details,
		"T": strconv.FormatUint(e.Term, 10), "c": cluster,
	}
}

// expandPlaceholders replaces %x with the shell-quoted value of x; an
// unknown placeholder is left as it is.
func expandPlaceholders(s string, vals map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		k := s[i+1 : i+2]
		switch v, ok := vals[k]; {
		case k == "%":
			b.WriteByte('%')
		case ok:
			b.WriteString(shellQuote(v))
		default:
			b.WriteString(s[i : i+2])
		}
		i++
	}
	return b.String()
}

func shellQuote(v string) string {
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}
