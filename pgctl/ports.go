package pgctl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CheckPortFree verifies that no other process listens on Options.Port on
// any of the listen addresses, nor on the unix socket in SocketDir. The
// error wraps ErrPortInUse and names the port and address.
func (c *Controller) CheckPortFree(ctx context.Context) error {
	port := strconv.Itoa(c.opts.Port)
	sock := filepath.Join(c.opts.SocketDir, ".s.PGSQL."+port)
	if _, err := os.Stat(sock); err == nil {
		d := net.Dialer{Timeout: time.Second}
		if conn, err := d.DialContext(ctx, "unix", sock); err == nil {
			conn.Close()
			return fmt.Errorf("%w: port %d on unix socket %s is already in use by another process; choose another postgres.port (or stop the other server)", ErrPortInUse, c.opts.Port, sock)
		}
	}
	addrs, err := c.listenIPs(ctx)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		l, err := net.Listen(a.network, net.JoinHostPort(a.ip, port))
		if err == nil {
			l.Close()
			continue
		}
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("%w: port %d on %s is already in use by another process; choose another postgres.port", ErrPortInUse, c.opts.Port, a.ip)
		}
		c.log.Warn("cannot test-bind a listen address (Postgres will try it too)", "address", a.ip, "port", port, "error", err)
	}
	return nil
}

type listenAddr struct{ network, ip string }

func (c *Controller) listenIPs(ctx context.Context) ([]listenAddr, error) {
	var out []listenAddr
	for _, h := range strings.Split(c.opts.ListenAddresses, ",") {
		h = strings.TrimSpace(h)
		switch {
		case h == "":
			continue
		case h == "*":
			out = append(out, listenAddr{"tcp4", "0.0.0.0"}, listenAddr{"tcp6", "::"})
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			out = append(out, tcpAddr(ip))
			continue
		}
		ips, err := net.DefaultResolver.LookupIPAddr(ctx, h)
		if err != nil {
			return nil, fmt.Errorf("resolving listen address %q (postgres.listen_addresses): %w", h, err)
		}
		for _, ip := range ips {
			out = append(out, tcpAddr(ip.IP))
		}
	}
	return out, nil
}

func tcpAddr(ip net.IP) listenAddr {
	if ip.To4() != nil {
		return listenAddr{"tcp4", ip.String()}
	}
	return listenAddr{"tcp6", ip.String()}
}
