package agentclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/msb-go/msb/internal/agentproto"
)

// writeChunk is the fs.data chunk size WriteFile sends: a bulk frame,
// which the relay and agentd move in recycled buffers.
const writeChunk = agentproto.BulkChunk

// reply waits for the terminal frame of a request.
type reply struct {
	done chan struct{}
	once sync.Once
	msg  agentproto.Message // valid after done, when err is nil
	err  error
}

func newReply() *reply { return &reply{done: make(chan struct{})} }

func (r *reply) handle(m agentproto.Message, _ agentproto.RawFrame) {
	if m.Flags()&agentproto.FlagTerminal != 0 {
		r.once.Do(func() { r.msg = m; close(r.done) })
	}
}

func (r *reply) fail(err error) { r.once.Do(func() { r.err = err; close(r.done) }) }

// wait returns the terminal message, or ctx's error. A request abandoned on
// ctx keeps its id reserved until the agent answers.
func (r *reply) wait(ctx context.Context) (agentproto.Message, error) {
	select {
	case <-r.done:
		return r.msg, r.err
	case <-ctx.Done():
		return agentproto.Message{}, ctx.Err()
	}
}

// fsResponse decodes a core.fs.response and turns ok=false into *FsError.
func fsResponse(m agentproto.Message, op, path string) (agentproto.FsResponse, error) {
	var resp agentproto.FsResponse
	if m.Type != agentproto.TypeFsResponse {
		return resp, fmt.Errorf("%w: %s answers an fs request", ErrProtocol, m.Type)
	}
	if err := m.Decode(&resp); err != nil {
		return resp, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	if !resp.OK {
		msg := "unknown error"
		if resp.Error != nil {
			msg = *resp.Error
		}
		return resp, &FsError{Op: op, Path: path, Message: msg}
	}
	return resp, nil
}

// fsCall runs a one-reply fs operation.
func (c *Client) fsCall(ctx context.Context, op agentproto.FsOp, name, path string) (agentproto.FsResponse, error) {
	if err := ctx.Err(); err != nil {
		return agentproto.FsResponse{}, err
	}
	r := newReply()
	id, err := c.register(r)
	if err != nil {
		return agentproto.FsResponse{}, err
	}
	if err := c.send(id, agentproto.TypeFsRequest, agentproto.FsRequest{Op: op}); err != nil {
		c.unregister(id, r)
		return agentproto.FsResponse{}, err
	}
	m, err := r.wait(ctx)
	if err != nil {
		return agentproto.FsResponse{}, err
	}
	return fsResponse(m, name, path)
}

// Stat returns information about path (lstat: a symlink is not followed).
func (c *Client) Stat(ctx context.Context, path string) (agentproto.FsEntry, error) {
	resp, err := c.fsCall(ctx, agentproto.FsOp{Kind: agentproto.FsStat, Path: path}, "stat", path)
	if err != nil {
		return agentproto.FsEntry{}, fmt.Errorf("stat %s: %w", path, err)
	}
	if resp.Data == nil || resp.Data.Stat == nil {
		return agentproto.FsEntry{}, fmt.Errorf("stat %s: %w: response without Stat data", path, ErrProtocol)
	}
	return *resp.Data.Stat, nil
}

// List returns the entries of directory path.
func (c *Client) List(ctx context.Context, path string) ([]agentproto.FsEntry, error) {
	resp, err := c.fsCall(ctx, agentproto.FsOp{Kind: agentproto.FsList, Path: path}, "list", path)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", path, err)
	}
	if resp.Data == nil || resp.Data.Stat != nil {
		return nil, fmt.Errorf("list %s: %w: response without List data", path, ErrProtocol)
	}
	return resp.Data.List, nil
}

func (c *Client) simple(ctx context.Context, kind agentproto.FsOpKind, name, path string) error {
	if _, err := c.fsCall(ctx, agentproto.FsOp{Kind: kind, Path: path}, name, path); err != nil {
		return fmt.Errorf("%s %s: %w", name, path, err)
	}
	return nil
}

// Mkdir creates directory path and its parents (mkdir -p).
func (c *Client) Mkdir(ctx context.Context, path string) error {
	return c.simple(ctx, agentproto.FsMkdir, "mkdir", path)
}

// Remove removes the file path.
func (c *Client) Remove(ctx context.Context, path string) error {
	return c.simple(ctx, agentproto.FsRemove, "remove", path)
}

// RemoveDir removes directory path and everything below it.
func (c *Client) RemoveDir(ctx context.Context, path string) error {
	return c.simple(ctx, agentproto.FsRemoveDir, "remove dir", path)
}

func (c *Client) pair(ctx context.Context, kind agentproto.FsOpKind, name, src, dst string) error {
	what := src + " -> " + dst
	if _, err := c.fsCall(ctx, agentproto.FsOp{Kind: kind, Src: src, Dst: dst}, name, what); err != nil {
		return fmt.Errorf("%s %s: %w", name, what, err)
	}
	return nil
}

// Copy copies the file src to dst inside the guest.
func (c *Client) Copy(ctx context.Context, src, dst string) error {
	return c.pair(ctx, agentproto.FsCopy, "copy", src, dst)
}

// Rename renames src to dst inside the guest.
func (c *Client) Rename(ctx context.Context, src, dst string) error {
	return c.pair(ctx, agentproto.FsRename, "rename", src, dst)
}

// fileReader streams a guest file: fs.data frames, then the response.
type fileReader struct {
	path string
	p    *pipe
	stop func() bool
}

func (r *fileReader) handle(m agentproto.Message, f agentproto.RawFrame) {
	switch m.Type {
	case agentproto.TypeFsData:
		data, err := m.Data()
		if err != nil {
			r.fail(fmt.Errorf("%w: %w", ErrProtocol, err))
			return
		}
		r.p.write(data, f)
	case agentproto.TypeFsResponse:
		if _, err := fsResponse(m, "read", r.path); err != nil {
			r.fail(err)
			return
		}
		r.p.closeWrite(io.EOF)
	default:
		if m.Flags()&agentproto.FlagTerminal != 0 {
			r.fail(fmt.Errorf("%w: %s ends a read", ErrProtocol, m.Type))
		}
	}
}

func (r *fileReader) fail(err error) { r.p.closeWrite(err) }

func (r *fileReader) Read(b []byte) (int, error) { return r.p.Read(b) }

// WriteTo implements io.WriterTo, so io.Copy moves whole chunks.
func (r *fileReader) WriteTo(w io.Writer) (int64, error) { return r.p.WriteTo(w) }

// Close abandons the rest of the file. The agent still sends it; the
// frames are discarded.
func (r *fileReader) Close() error {
	r.stop()
	r.p.closeRead(fmt.Errorf("read %s: %w", r.path, ErrSessionFinished))
	return nil
}

// ReadFile streams the guest file path. It returns once the agent has sent
// the first data or its answer, so a missing file is reported here
// (errors.Is(err, fs.ErrNotExist)). Cancelling ctx before the stream is
// read to the end makes further reads fail with ctx.Err(). The caller must
// Close the reader.
func (c *Client) ReadFile(ctx context.Context, path string) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := &fileReader{path: path, p: newPipe()}
	id, err := c.register(r)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if err := c.send(id, agentproto.TypeFsRequest, agentproto.FsRequest{Op: agentproto.FsOp{Kind: agentproto.FsRead, Path: path}}); err != nil {
		c.unregister(id, r)
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	r.stop = context.AfterFunc(ctx, func() { r.p.closeRead(ctx.Err()) })
	select {
	case <-r.p.ready:
	case <-ctx.Done():
		r.Close()
		return nil, fmt.Errorf("read %s: %w", path, ctx.Err())
	}
	// An error before any data: report it now.
	if !r.p.buffered() {
		if err := r.p.endErr(); err != nil && err != io.EOF {
			r.Close()
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
	}
	return r, nil
}

// WriteFile creates or truncates the guest file path (creating parent
// directories), sets its mode when mode is non-nil, and streams r into it in
// chunks of at most 1 MiB followed by EOF. If ctx is cancelled mid-stream,
// WriteFile ends the stream (leaving a partial file) and returns ctx.Err().
func (c *Client) WriteFile(ctx context.Context, path string, mode *uint32, r io.Reader) error {
	if err := c.writeFile(ctx, path, mode, r); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func (c *Client) writeFile(ctx context.Context, path string, mode *uint32, src io.Reader) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rep := newReply()
	id, err := c.register(rep)
	if err != nil {
		return err
	}
	op := agentproto.FsOp{Kind: agentproto.FsWrite, Path: path, Mode: mode}
	if err := c.send(id, agentproto.TypeFsRequest, agentproto.FsRequest{Op: op}); err != nil {
		c.unregister(id, rep)
		return err
	}
	// The source is read straight into the frame, which is written
	// before the next read: one buffer, no copy.
	buf := make([]byte, agentproto.DataHeadroom+writeChunk)
	for {
		// An early answer is a failure (the agent does not answer a
		// successful open); stop sending.
		select {
		case <-rep.done:
			if rep.err != nil {
				return rep.err
			}
			_, err := fsResponse(rep.msg, "write", path)
			if err == nil {
				err = fmt.Errorf("%w: write answered before EOF", ErrProtocol)
			}
			return err
		default:
		}
		if err := ctx.Err(); err != nil {
			// End the stream so the agent closes the file; its answer
			// frees the id.
			_ = c.send(id, agentproto.TypeFsData, agentproto.FsData{})
			return err
		}
		n, rerr := io.ReadFull(src, buf[agentproto.DataHeadroom:])
		if n > 0 {
			f, err := agentproto.PutDataFrame(buf, id, agentproto.TypeFsData, n)
			if err == nil {
				err = c.sendRaw(f)
			}
			if err != nil {
				return err
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			_ = c.send(id, agentproto.TypeFsData, agentproto.FsData{})
			return fmt.Errorf("read source: %w", rerr)
		}
	}
	if err := c.send(id, agentproto.TypeFsData, agentproto.FsData{}); err != nil {
		return err
	}
	m, err := rep.wait(ctx)
	if err != nil {
		return err
	}
	_, err = fsResponse(m, "write", path)
	return err
}

// Symlink creates the guest symlink link pointing at target. It needs an
// agent with agentproto.CapFsMeta; without it, it returns an error wrapping
// errors.ErrUnsupported.
func (c *Client) Symlink(ctx context.Context, target, link string) error {
	if !c.ready.Has(agentproto.CapFsMeta) {
		return fmt.Errorf("symlink %s: agent without %s: %w", link, agentproto.CapFsMeta, errors.ErrUnsupported)
	}
	return c.pair(ctx, agentproto.FsSymlink, "symlink", target, link)
}

// SetAttr sets the guest path's permission bits (st_mode bits; ignored for
// a symlink) and modification time (unix seconds), each when non-nil,
// without following a symlink. It needs an agent with
// agentproto.CapFsMeta; without it, it returns an error wrapping
// errors.ErrUnsupported.
func (c *Client) SetAttr(ctx context.Context, path string, mode *uint32, modified *int64) error {
	if !c.ready.Has(agentproto.CapFsMeta) {
		return fmt.Errorf("set attributes of %s: agent without %s: %w", path, agentproto.CapFsMeta, errors.ErrUnsupported)
	}
	op := agentproto.FsOp{Kind: agentproto.FsSetAttr, Path: path, Mode: mode, Modified: modified}
	if _, err := c.fsCall(ctx, op, "set attributes", path); err != nil {
		return fmt.Errorf("set attributes of %s: %w", path, err)
	}
	return nil
}
