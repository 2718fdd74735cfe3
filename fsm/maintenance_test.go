package fsm

import (
	"errors"
	"strings"
	"testing"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

func maintenance(c *pb.SetMaintenance) *pb.Command {
	return &pb.Command{Cmd: &pb.Command_SetMaintenance{SetMaintenance: c}}
}

// TestMaintenance: an operator puts a standby into maintenance (an event
// says so) and out again; a standby in maintenance is no failover
// candidate; the primary, a witness, an unknown node and a stale term are
// refused; the same state again changes nothing; a follower cannot
// forward it.
func TestMaintenance(t *testing.T) {
	h := threeNodes(t)
	for _, tc := range []struct {
		name string
		cmd  *pb.SetMaintenance
		code Code
	}{
		{"the primary", &pb.SetMaintenance{Term: 1, NodeId: 1, On: true}, CodeInvalidTransition},
		{"the witness", &pb.SetMaintenance{Term: 1, NodeId: 4, On: true}, CodeInvalidCommand},
		{"unknown node", &pb.SetMaintenance{Term: 1, NodeId: 9, On: true}, CodeUnknownNode},
		{"stale term", &pb.SetMaintenance{Term: 0, NodeId: 3, On: true}, CodeStaleTerm},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(h.m.State().Events)
			if r := h.apply(maintenance(tc.cmd)); !errors.Is(r.Err, &Error{Code: tc.code}) {
				t.Fatalf("error %v, want %s", r.Err, tc.code)
			}
			if len(h.m.State().Events) != before {
				t.Fatal("a refused command recorded an event")
			}
		})
	}
	h.ok(maintenance(&pb.SetMaintenance{Term: 1, NodeId: 3, On: true, Reason: "disk swap"}))
	pg3 := NodeByID(h.m.State(), 3)
	if !pg3.Maintenance || pg3.MaintenanceReason != "disk swap" {
		t.Fatalf("pg3: maintenance %v reason %q", pg3.Maintenance, pg3.MaintenanceReason)
	}
	evs := h.m.State().Events
	if last := evs[len(evs)-1]; last.Type != EventMaintenance || last.NodeId != 3 || !strings.Contains(last.Details, "disk swap") {
		t.Fatalf("last event %v, want node_maintenance about pg3 with the reason", last)
	}
	cands, skipped := Promotable(h.m.State())
	if len(cands) != 1 || cands[0].Name != "pg2" || skipped["pg3"] != "in maintenance" {
		t.Fatalf("candidates %v, skipped %v: want only pg2, pg3 in maintenance", cands, skipped)
	}
	n := len(h.m.State().Events)
	h.ok(maintenance(&pb.SetMaintenance{Term: 1, NodeId: 3, On: true}))
	if len(h.m.State().Events) != n {
		t.Fatal("maintenance on twice recorded a second event")
	}
	if err := CheckForwarded(h.m.State(), "pg3", maintenance(&pb.SetMaintenance{Term: 1, NodeId: 3})); err == nil {
		t.Fatal("a follower may forward SetMaintenance: only an operator on the leader may")
	}
	h.ok(maintenance(&pb.SetMaintenance{Term: 1, NodeId: 3}))
	if pg3 := NodeByID(h.m.State(), 3); pg3.Maintenance || pg3.MaintenanceReason != "" {
		t.Fatalf("pg3 after off: %v %q", pg3.Maintenance, pg3.MaintenanceReason)
	}
	if cands, _ := Promotable(h.m.State()); len(cands) != 2 {
		t.Fatalf("candidates after maintenance off: %v, want pg2 and pg3", cands)
	}
}
