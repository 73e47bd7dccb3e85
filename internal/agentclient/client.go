package agentclient

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/msb-go/msb/internal/agentproto"
)

// handler receives the frames of one session. Its methods run on the
// connection's reader goroutine (fail may also run on the goroutine that
// closes the Client) and must not call back into the Client's mutex.
type handler interface {
	// handle gets each frame for the session in order, decoded as m. It
	// may block to apply back-pressure but must return once fail has been
	// called. f may be a pooled bulk buffer: a handler that keeps m's data
	// past its return hands f on with it (pipe.write), else f is collected.
	handle(m agentproto.Message, f agentproto.RawFrame)
	// fail ends the session with err (wrapping ErrClosed when the
	// connection died). It may be called more than once.
	fail(err error)
}

// Client is a connection to one agent. It is safe for concurrent use.
type Client struct {
	conn    io.ReadWriteCloser
	enc     *agentproto.Encoder
	ready   agentproto.Ready
	version uint32
	offset  uint32 // first id of this client's range minus one

	// mu protects subs, next and err.
	mu sync.Mutex
	// subs maps live session ids to their handlers. An id stays here until
	// its terminal frame arrives or the connection ends, even if its
	// caller has given up, so that it is never reused too early.
	subs map[uint32]handler
	next uint32 // next id to try
	err  error  // non-nil once the connection is finished

	done    chan struct{} // closed when the reader goroutine exits
	closing chan struct{} // closed by Close
	once    sync.Once
}

// Dial connects to a sandbox relay socket and completes its handshake:
// the relay sends this client's id offset (u32 BE) and then the agent's
// cached core.ready frame.
func Dial(ctx context.Context, socketPath string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socketPath)
	if err != nil {
		return nil, fmt.Errorf("dial agent relay: %w", err)
	}
	c, err := handshake(ctx, conn, true)
	if err != nil {
		return nil, fmt.Errorf("dial agent relay %s: %w", socketPath, err)
	}
	return c, nil
}

// NewDirect starts a client on a connection straight to agentd (no relay):
// agentd sends only its core.ready frame, and ids run 1 … IDStep-1. The
// Client owns conn and closes it.
func NewDirect(ctx context.Context, conn io.ReadWriteCloser) (*Client, error) {
	return handshake(ctx, conn, false)
}

func handshake(ctx context.Context, conn io.ReadWriteCloser, relay bool) (*Client, error) {
	// Reads cannot take a ctx: closing the connection unblocks them.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	c, err := readHandshake(conn, relay)
	if !stop() {
		conn.Close()
		return nil, fmt.Errorf("handshake: %w", ctx.Err())
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	go c.readLoop(bufio.NewReaderSize(conn, 64<<10))
	return c, nil
}

func readHandshake(conn io.ReadWriteCloser, relay bool) (*Client, error) {
	var offset uint32
	if relay {
		var b [4]byte
		if _, err := io.ReadFull(conn, b[:]); err != nil {
			// The relay accepts a 17th client and closes it at once.
			return nil, fmt.Errorf("%w: read id offset (relay full?): %w", ErrClosed, err)
		}
		offset = binary.BigEndian.Uint32(b[:])
		if offset%agentproto.IDStep != 0 || offset/agentproto.IDStep >= agentproto.MaxClients {
			return nil, fmt.Errorf("%w: id offset %d is not a relay slot", ErrProtocol, offset)
		}
	}
	f, err := agentproto.ReadRawFrame(conn)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%w: %w", ErrClosed, err)
		}
		return nil, fmt.Errorf("read ready frame: %w", err)
	}
	m, err := f.Message()
	if err != nil {
		return nil, fmt.Errorf("read ready frame: %w", err)
	}
	if m.Type != agentproto.TypeReady || m.ID != 0 {
		return nil, fmt.Errorf("%w: first frame is %s id %d, want %s id 0", ErrProtocol, m.Type, m.ID, agentproto.TypeReady)
	}
	var ready agentproto.Ready
	if err := m.Decode(&ready); err != nil {
		return nil, fmt.Errorf("read ready frame: %w", err)
	}
	version, err := agentproto.Negotiate(ready)
	if err != nil {
		return nil, err
	}
	return &Client{
		conn:    conn,
		enc:     agentproto.NewEncoder(conn),
		ready:   ready,
		version: version,
		offset:  offset,
		subs:    make(map[uint32]handler),
		next:    offset + 1,
		done:    make(chan struct{}),
		closing: make(chan struct{}),
	}, nil
}

// Ready returns the agent's core.ready payload.
func (c *Client) Ready() agentproto.Ready { return c.ready }

// Version returns the negotiated protocol version.
func (c *Client) Version() uint32 { return c.version }

// Done returns a channel closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Close closes the connection, ends every session with an error wrapping
// ErrClosed, and waits for the reader goroutine to exit.
func (c *Client) Close() error {
	var err error
	c.once.Do(func() {
		close(c.closing)
		err = c.conn.Close()
		// The reader may be blocked delivering to a full stream rather
		// than reading, so wake it by failing every session now.
		c.finish(ErrClosed)
	})
	<-c.done
	if err != nil {
		return fmt.Errorf("close agent connection: %w", err)
	}
	return nil
}

// finish marks the connection finished with err and fails every session.
// Only the first error is kept.
func (c *Client) finish(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	subs := c.subs
	c.subs = make(map[uint32]handler)
	err = c.err
	c.mu.Unlock()
	for _, h := range subs {
		h.fail(err)
	}
}

// closedErr returns the error that ended the connection, or nil.
func (c *Client) closedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *Client) readLoop(r *bufio.Reader) {
	defer close(c.done)
	for {
		// Bulk frames (fs.data, exec output) come from the pool; the
		// stream's pipe gives them back once the caller has the data.
		f, err := agentproto.ReadRawFrameBulk(r)
		if err != nil {
			select {
			case <-c.closing:
				c.finish(ErrClosed)
			default:
				c.finish(fmt.Errorf("%w: read: %w", ErrClosed, err))
			}
			return
		}
		id := f.ID()
		if id == 0 {
			// Only core.ready uses id 0 in this direction; a repeat
			// carries nothing new.
			continue
		}
		c.mu.Lock()
		h := c.subs[id]
		c.mu.Unlock()
		if h == nil {
			continue
		}
		m, err := f.Message()
		if err != nil {
			// The frame was read whole, so the stream is still in sync.
			headerTerminal := f.Flags()&agentproto.FlagTerminal != 0
			if errors.Is(err, agentproto.ErrUnknownType) && !headerTerminal {
				// A newer agent's extension that this host does not know.
				continue
			}
			// Only this session is broken. Its id stays reserved until
			// the agent ends it.
			h.fail(fmt.Errorf("%w: session %d: %w", ErrProtocol, id, err))
			if headerTerminal {
				c.unregister(id, h)
			}
			continue
		}
		// The type, not the header's flag byte, decides whether the
		// session ends: every handler ends itself on a terminal type, so
		// a session leaves subs exactly when it is over.
		if m.Flags()&agentproto.FlagTerminal != 0 {
			c.unregister(id, h)
		}
		h.handle(m, f)
	}
}

// register allocates a free id in this client's range for h.
func (c *Client) register(h handler) (uint32, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	first, last := c.offset+1, c.offset+agentproto.IDStep-1
	if len(c.subs) >= int(last-first+1) {
		return 0, errors.New("agentclient: every session id is in use")
	}
	for {
		id := c.next
		if c.next == last {
			c.next = first
		} else {
			c.next++
		}
		if _, busy := c.subs[id]; !busy {
			c.subs[id] = h
			return id, nil
		}
	}
}

// unregister frees id if it still belongs to h.
func (c *Client) unregister(id uint32, h handler) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.subs[id] == h {
		delete(c.subs, id)
	}
}

// send encodes and writes one message.
func (c *Client) send(id uint32, t agentproto.Type, payload any) (err error) {
	var f agentproto.RawFrame
	if d, ok := payload.(agentproto.ExecData); ok {
		// Data messages are built by hand with one copy of the data.
		f, err = agentproto.DataFrame(id, t, d.Data)
	} else {
		var m agentproto.Message
		if m, err = agentproto.New(id, t, payload); err == nil {
			f, err = m.Marshal()
		}
	}
	if err != nil {
		return err // e.g. ErrFrameTooLarge: the connection is fine
	}
	return c.sendRaw(f)
}

// sendRaw writes an encoded frame; the frame's memory may be reused once
// it returns.
func (c *Client) sendRaw(f agentproto.RawFrame) error {
	if err := c.closedErr(); err != nil {
		return err
	}
	if err := c.enc.WriteRaw(f); err != nil {
		if cerr := c.closedErr(); cerr != nil {
			return cerr
		}
		// A failed or partial write leaves the stream unusable: end the
		// connection so that every session learns it.
		c.conn.Close()
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return nil
}

// Shutdown asks the agent to terminate its sessions, sync, and power the
// guest off (core.shutdown, id 0). It returns once the request is sent; the
// connection ends when the guest goes down.
func (c *Client) Shutdown(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := c.send(0, agentproto.TypeShutdown, nil); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
