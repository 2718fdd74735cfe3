package main

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// nodeSelector is the value of every --node flag that picks one member: its
// name or its id, as cluster show lists them.
type nodeSelector string

// parse says whether s is an id (all digits) or a name.
func (s nodeSelector) parse() (id uint32, name string, err error) {
	if s == "" {
		return 0, "", nil
	}
	if n, perr := strconv.ParseUint(string(s), 10, 32); perr == nil {
		if n == 0 {
			return 0, "", fmt.Errorf("--node 0: ids start at 1 (see cluster show)")
		}
		return uint32(n), "", nil
	}
	return 0, string(s), nil
}

// resolve finds the member s names in a cluster view: its id and name.
func (s nodeSelector) resolve(view *pb.ShowResponse) (uint32, string, error) {
	id, name, err := s.parse()
	if err != nil || s == "" {
		return 0, "", err
	}
	for _, n := range view.GetNodes() {
		if (id != 0 && n.Id == id) || (name != "" && n.Name == name) {
			return n.Id, n.Name, nil
		}
	}
	var known []string
	for _, n := range view.GetNodes() {
		known = append(known, fmt.Sprintf("%s (%d)", n.Name, n.Id))
	}
	return 0, "", fmt.Errorf("--node %s: no such member; the members are %v", string(s), known)
}

// timeText is the one time format of the CLI's tables (local time, ms);
// timeJSON the one of its JSON (UTC, RFC 3339 with milliseconds always
// written, so that the strings sort as the times do).
func timeText(unixMs int64) string {
	return time.UnixMilli(unixMs).Local().Format("2006-01-02 15:04:05.000")
}

func timeJSON(unixMs int64) string {
	return time.UnixMilli(unixMs).UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// newestFirst orders items by their time, newest first, or oldest first
// when reverse is set (events and history alike). Items of the same time
// keep their order.
func newestFirst[T any](items []T, at func(T) int64, reverse bool) {
	slices.SortStableFunc(items, func(a, b T) int {
		if reverse {
			return int(sign(at(a) - at(b)))
		}
		return int(sign(at(b) - at(a)))
	})
}

func sign(d int64) int64 {
	switch {
	case d < 0:
		return -1
	case d > 0:
		return 1
	}
	return 0
}

// String, Set and Type make nodeSelector a pflag.Value.
func (s *nodeSelector) String() string { return string(*s) }

func (s *nodeSelector) Set(v string) error {
	*s = nodeSelector(v)
	_, _, err := s.parse()
	return err
}

func (s *nodeSelector) Type() string { return "name|id" }
