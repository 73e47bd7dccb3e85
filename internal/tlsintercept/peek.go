package tlsintercept

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"time"
)

// maxHelloBytes bounds what peekHello buffers: a ClientHello is at most a
// 64 KiB handshake message plus record headers.
const maxHelloBytes = 70 << 10

var errPeeked = errors.New("client hello peeked")

// recordConn is a guest conn as seen during peekHello: reads are recorded (and
// bounded), writes are swallowed so the aborted handshake's alert never
// reaches the guest.
type recordConn struct {
	net.Conn
	buf bytes.Buffer
}

func (c *recordConn) Read(p []byte) (int, error) {
	if room := maxHelloBytes - c.buf.Len(); room <= 0 {
		return 0, errors.New("client hello too large")
	} else if len(p) > room {
		p = p[:room]
	}
	n, err := c.Conn.Read(p)
	c.buf.Write(p[:n])
	return n, err
}

func (c *recordConn) Write(p []byte) (int, error) { return len(p), nil }

// replayConn returns the recorded bytes before reading on from the conn.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite half-closes the underlying conn when it supports it.
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// peekHello reads the guest's ClientHello using crypto/tls's own parser and
// returns it with the bytes read so far, to be replayed to the real
// handshake or to a bypassed origin. A guest that does not speak TLS gets
// an error and, because writes are swallowed, no reply.
func peekHello(conn net.Conn, timeout time.Duration) (*tls.ClientHelloInfo, []byte, error) {
	rc := &recordConn{Conn: conn}
	var hello *tls.ClientHelloInfo
	srv := tls.Server(rc, &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			// Copy the fields used later; h must not be retained.
			hello = &tls.ClientHelloInfo{ServerName: h.ServerName, SupportedProtos: append([]string(nil), h.SupportedProtos...)}
			return nil, errPeeked
		},
	})
	conn.SetReadDeadline(time.Now().Add(timeout))
	err := srv.Handshake()
	conn.SetReadDeadline(time.Time{})
	if hello == nil {
		if err == nil {
			err = errors.New("no client hello")
		}
		return nil, nil, err
	}
	return hello, rc.buf.Bytes(), nil
}
