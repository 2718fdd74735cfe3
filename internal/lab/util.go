package lab

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
)

// FreeBase finds a base port whose whole block (Postgres, gRPC, Raft, HTTP
// for up to 20 nodes) is free on loopback. Blocks lie below the kernel's
// ephemeral range (32768 and up), so that no outgoing connection's local
// port can take a port a node binds later.
func FreeBase() (int, error) {
	for range 200 {
		base := 20000 + rand.IntN(120)*100
		ok := true
		for off := 0; off < offHTTP+maxNodes && ok; off++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+off))
			if err != nil {
				ok = false
				break
			}
			_ = ln.Close()
		}
		if ok {
			return base, nil
		}
	}
	return 0, errors.New("no free block of 80 ports on loopback")
}

// Tail is the last n lines of a file (none when it cannot be read).
func Tail(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return lines
}
