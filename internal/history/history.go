// Package history is a sidecar's own monitoring history on disk: the
// samples (pb.NodeReport) it takes of itself, kept for a retention period,
// read back by `hasidecar cluster history` from every sidecar and pruned by
// `cluster cleanup --keep-history`.
//
// Samples are appended to one segment file per hour
// (DIR/<unix hour>.hist); a segment is a sequence of records, each a
// uvarint length, the protobuf encoding of the sample and its CRC-32C
// (big-endian). A crash can leave a torn record at the end of the last
// segment: reading stops there. Pruning removes whole segments past the
// retention, and rewrites the one a cleanup cuts through.
package history

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

const (
	segmentExt = ".hist"
	// maxRecord bounds one record's length: a larger one is corruption.
	maxRecord = 1 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt: a record's length or checksum is wrong (not a torn tail).
var ErrCorrupt = errors.New("history: corrupt record")

// Store is one sidecar's history directory. Safe for concurrent use.
type Store struct {
	dir string
	mu  sync.Mutex
}

// Open makes dir (0700) when missing.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("history directory %s: %w", dir, err)
	}
	return &Store{dir: dir}, nil
}

func segmentHour(t time.Time) int64 { return t.Unix() / 3600 }

func (s *Store) segmentPath(hour int64) string {
	return filepath.Join(s.dir, strconv.FormatInt(hour, 10)+segmentExt)
}

// Append adds one sample, filed by its AtUnixMs.
func (s *Store) Append(r *pb.NodeReport) error {
	rec, err := encodeRecord(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	path := s.segmentPath(segmentHour(time.UnixMilli(r.AtUnixMs)))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("history: append to %s: %w", path, err)
	}
	if _, err := f.Write(rec); err != nil {
		_ = f.Close()
		return fmt.Errorf("history: append to %s: %w", path, err)
	}
	return f.Close()
}

func encodeRecord(r *pb.NodeReport) ([]byte, error) {
	b, err := proto.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("history: encode sample: %w", err)
	}
	out := binary.AppendUvarint(nil, uint64(len(b)))
	out = append(out, b...)
	return binary.BigEndian.AppendUint32(out, crc32.Checksum(b, castagnoli)), nil
}

// Decode reads a segment's records. A torn record at the end (a crash
// while appending) ends the segment without an error; a bad length or
// checksum before the end is ErrCorrupt, with the samples read until then.
func Decode(r io.Reader) ([]*pb.NodeReport, error) {
	br := bufio.NewReader(r)
	var out []*pb.NodeReport
	for {
		n, err := binary.ReadUvarint(br)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return out, nil
			}
			return out, fmt.Errorf("%w: length: %v", ErrCorrupt, err)
		}
		if n > maxRecord {
			return out, fmt.Errorf("%w: length %d", ErrCorrupt, n)
		}
		buf := make([]byte, n+4)
		if _, err := io.ReadFull(br, buf); err != nil {
			return out, nil // torn tail
		}
		body := buf[:n]
		if binary.BigEndian.Uint32(buf[n:]) != crc32.Checksum(body, castagnoli) {
			return out, fmt.Errorf("%w: checksum", ErrCorrupt)
		}
		var rep pb.NodeReport
		if err := proto.Unmarshal(body, &rep); err != nil {
			return out, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		out = append(out, &rep)
	}
}

// segments lists the segment hours, oldest first.
func (s *Store) segments() ([]int64, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("history: list %s: %w", s.dir, err)
	}
	var hours []int64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), segmentExt)
		if !ok {
			continue
		}
		if h, err := strconv.ParseInt(name, 10, 64); err == nil {
			hours = append(hours, h)
		}
	}
	slices.Sort(hours)
	return hours, nil
}

func (s *Store) readSegment(hour int64) ([]*pb.NodeReport, error) {
	f, err := os.Open(s.segmentPath(hour))
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer f.Close()
	reps, err := Decode(f)
	if err != nil {
		return reps, fmt.Errorf("history: %s: %w", f.Name(), err)
	}
	return reps, nil
}

// Read returns the samples taken at or after since, newest first, at most
// limit of them (0: all). A corrupt segment contributes what precedes the
// damage; the error says which segment it was.
func (s *Store) Read(since time.Time, limit int) ([]*pb.NodeReport, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	hours, err := s.segments()
	if err != nil {
		return nil, err
	}
	var out []*pb.NodeReport
	var errs []error
	for i := len(hours) - 1; i >= 0; i-- {
		if !since.IsZero() && hours[i] < segmentHour(since) {
			break
		}
		reps, err := s.readSegment(hours[i])
		if err != nil {
			errs = append(errs, err)
		}
		for j := len(reps) - 1; j >= 0; j-- {
			if !since.IsZero() && reps[j].AtUnixMs < since.UnixMilli() {
				continue
			}
			out = append(out, reps[j])
			if limit > 0 && len(out) >= limit {
				return out, errors.Join(errs...)
			}
		}
	}
	return out, errors.Join(errs...)
}

// Prune removes the samples taken before cut and returns how many.
func (s *Store) Prune(cut time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	hours, err := s.segments()
	if err != nil {
		return 0, err
	}
	removed := 0
	for _, h := range hours {
		if h > segmentHour(cut) {
			break
		}
		reps, rerr := s.readSegment(h)
		keep := slices.DeleteFunc(slices.Clone(reps), func(r *pb.NodeReport) bool { return r.AtUnixMs < cut.UnixMilli() })
		removed += len(reps) - len(keep)
		path := s.segmentPath(h)
		if len(keep) == 0 {
			if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
				return removed, fmt.Errorf("history: prune %s: %w", path, err)
			}
			continue
		}
		if len(keep) == len(reps) && rerr == nil {
			continue
		}
		var b []byte
		for _, r := range keep {
			rec, err := encodeRecord(r)
			if err != nil {
				return removed, err
			}
			b = append(b, rec...)
		}
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			return removed, fmt.Errorf("history: prune %s: %w", path, err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return removed, fmt.Errorf("history: prune %s: %w", path, err)
		}
	}
	return removed, nil
}
