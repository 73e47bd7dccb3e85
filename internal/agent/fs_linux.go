package agent

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/msb-go/msb/internal/agentproto"
)

// maxListPayload keeps a List response inside one frame (the envelope and
// header take a few bytes of MaxFrameLen).
const maxListPayload = agentproto.MaxFrameLen - 4096

// fsWrite is an open Write session: the host streams fs.data into file.
type fsWrite struct {
	file *os.File
	path string // as requested, for removal on abort
	err  error  // first write error; reported at EOF
}

// startFs handles core.fs.request. Write opens its file synchronously, so
// that the fs.data frames that follow find the session; every other op runs
// in its own goroutine so a slow Copy or Read never stalls the console.
func (s *server) startFs(m agentproto.Message) {
	var req agentproto.FsRequest
	if err := m.Decode(&req); err != nil {
		s.fsError(m.ID, "request", err)
		return
	}
	op := req.Op
	if op.Kind == agentproto.FsWrite {
		s.fsOpenWrite(m.ID, op)
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.fsOp(m.ID, op)
	}()
}

func (s *server) fsOp(id uint32, op agentproto.FsOp) {
	switch op.Kind {
	case agentproto.FsStat:
		e, err := statEntry(op.Path)
		if err != nil {
			s.fsError(id, "stat", err)
			return
		}
		s.send(id, agentproto.TypeFsResponse, agentproto.FsResponse{OK: true, Data: &agentproto.FsResultData{Stat: &e}})
	case agentproto.FsList:
		list, err := listDir(op.Path)
		if err != nil {
			s.fsError(id, "list", err)
			return
		}
		resp := agentproto.FsResponse{OK: true, Data: &agentproto.FsResultData{List: list}}
		if p, err := agentproto.Marshal(resp); err != nil || len(p) > maxListPayload {
			s.fsError(id, "list", fmt.Errorf("%s: %d entries do not fit in one frame", op.Path, len(list)))
			return
		}
		s.send(id, agentproto.TypeFsResponse, resp)
	case agentproto.FsRead:
		if err := s.fsRead(id, op.Path); err != nil {
			s.fsError(id, "read", err)
			return
		}
		s.fsOK(id)
	case agentproto.FsMkdir:
		s.fsResult(id, "mkdir", os.MkdirAll(op.Path, 0o755))
	case agentproto.FsRemove:
		s.fsResult(id, "remove", removeFile(op.Path))
	case agentproto.FsRemoveDir:
		s.fsResult(id, "remove_dir", removeDir(op.Path))
	case agentproto.FsCopy:
		s.fsResult(id, "copy", copyFile(op.Src, op.Dst))
	case agentproto.FsRename:
		s.fsResult(id, "rename", os.Rename(op.Src, op.Dst))
	case agentproto.FsSymlink:
		s.fsResult(id, "symlink", os.Symlink(op.Src, op.Dst))
	case agentproto.FsSetAttr:
		s.fsResult(id, "set_attr", setAttr(op.Path, op.Mode, op.Modified))
	default:
		s.fsError(id, "request", fmt.Errorf("unknown op %q", string(op.Kind)))
	}
}

func (s *server) fsResult(id uint32, step string, err error) {
	if err != nil {
		s.fsError(id, step, err)
		return
	}
	s.fsOK(id)
}

func (s *server) fsOK(id uint32) {
	s.send(id, agentproto.TypeFsResponse, agentproto.FsResponse{OK: true})
}

// fsError sends a failed response whose message is prefixed by the step
// (`stat: …`, `copy: …`).
func (s *server) fsError(id uint32, step string, err error) {
	msg := step + ": " + err.Error()
	s.send(id, agentproto.TypeFsResponse, agentproto.FsResponse{OK: false, Error: &msg})
}

// fsRead streams the file as fs.data chunks of agentproto.BulkChunk bytes:
// large enough that the per-frame costs vanish, small enough that the
// frames of a stream overlap on the hops (agent, relay, client) and that
// the agent's output queue (outQueueLen frames) stays at 16 MiB. It is
// below MaxDataChunk, the most a reader must accept.
func (s *server) fsRead(id uint32, name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return &fs.PathError{Op: "read", Path: name, Err: syscall.EISDIR}
	}
	// The file is read straight into each frame's buffer; a buffer that
	// is sent belongs to the writer, which recycles bulk ones.
	chunk := int(min(agentproto.BulkChunk, max(fi.Size(), 4096)))
	newBuf := func() []byte {
		if chunk == agentproto.BulkChunk {
			return agentproto.GetBulk()
		}
		return make([]byte, agentproto.DataHeadroom+chunk)
	}
	buf := newBuf()
	defer func() { agentproto.PutBulk(buf) }()
	for {
		n, err := io.ReadFull(f, buf[agentproto.DataHeadroom:])
		if n > 0 && !s.sendData(id, agentproto.TypeFsData, buf, n) {
			buf = newBuf()
		}
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return nil
		case err != nil:
			return err
		}
	}
}

// fsOpenWrite starts a Write session: mkdir -p the parent, create and
// truncate, chmod. Success is silent (reference §3.2); the response comes
// after the empty fs.data.
func (s *server) fsOpenWrite(id uint32, op agentproto.FsOp) {
	s.mu.Lock()
	inUse := s.idInUse(id)
	s.mu.Unlock()
	if inUse {
		s.fsError(id, "write", fmt.Errorf("session id %d already in use", id))
		return
	}
	f, err := openForWrite(op.Path, op.Mode)
	if err != nil {
		s.fsError(id, "write", err)
		return
	}
	s.mu.Lock()
	s.writes[id] = &fsWrite{file: f, path: op.Path}
	s.mu.Unlock()
}

func openForWrite(name string, mode *uint32) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return nil, err
	}
	perm := os.FileMode(0o644)
	if mode != nil {
		perm = os.FileMode(*mode & 0o777)
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return nil, err
	}
	if mode != nil {
		// Apply the mode exactly, past the umask and for existing files;
		// setuid/setgid/sticky bits included.
		if err := f.Chmod(unixMode(*mode)); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// unixMode converts st_mode permission bits to an os.FileMode.
func unixMode(m uint32) os.FileMode {
	fm := os.FileMode(m & 0o777)
	if m&syscall.S_ISUID != 0 {
		fm |= os.ModeSetuid
	}
	if m&syscall.S_ISGID != 0 {
		fm |= os.ModeSetgid
	}
	if m&syscall.S_ISVTX != 0 {
		fm |= os.ModeSticky
	}
	return fm
}

// fsData handles core.fs.data for a Write session. Writing to a local file
// is done inline: it does not depend on any child process.
func (s *server) fsData(m agentproto.Message) {
	data, err := m.Data()
	if err != nil {
		s.log.Warn("bad fs.data frame", "id", m.ID, "err", err)
		return
	}
	d := agentproto.FsData{Data: data}
	s.mu.Lock()
	w := s.writes[m.ID]
	if w != nil && len(d.Data) == 0 {
		delete(s.writes, m.ID)
	}
	s.mu.Unlock()
	if w == nil {
		msg := fmt.Sprintf("unknown write session: %d", m.ID)
		s.send(m.ID, agentproto.TypeFsResponse, agentproto.FsResponse{OK: false, Error: &msg})
		return
	}
	if len(d.Data) > 0 {
		if w.err == nil {
			if _, err := w.file.Write(d.Data); err != nil {
				w.err = err
			}
		}
		return
	}
	err = w.err
	if cerr := w.file.Close(); err == nil {
		err = cerr
	}
	s.fsResult(m.ID, "write", err)
}

// closeWrites abandons every open Write session.
func (s *server) closeWrites() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, w := range s.writes {
		w.file.Close()
		delete(s.writes, id)
	}
}

// abortWrite ends Write session id, if there is one, without committing it:
// the partial file is closed and removed, and the host gets a terminal
// fs.response, which tells the relay the id is free again.
func (s *server) abortWrite(id uint32) {
	s.mu.Lock()
	w := s.writes[id]
	delete(s.writes, id)
	s.mu.Unlock()
	if w == nil {
		return
	}
	if err := removeOpened(w.file, w.path); err != nil {
		s.log.Warn("abort write: remove partial file", "id", id, "path", w.path, "err", err)
	}
	msg := "write: aborted: the client left before the end of the data"
	s.send(id, agentproto.TypeFsResponse, agentproto.FsResponse{OK: false, Error: &msg})
}

// removeOpened closes f and removes name, but only if name still is f: a
// file put in its place since (by a guest process) is left alone.
func removeOpened(f *os.File, name string) error {
	fi, err := f.Stat()
	f.Close()
	if err != nil {
		return err
	}
	cur, err := os.Lstat(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	if !os.SameFile(fi, cur) {
		return nil
	}
	return os.Remove(name)
}

func statEntry(name string) (agentproto.FsEntry, error) {
	fi, err := os.Lstat(name)
	if err != nil {
		return agentproto.FsEntry{}, err
	}
	return entryOf(name, fi), nil
}

func entryOf(name string, fi fs.FileInfo) agentproto.FsEntry {
	e := agentproto.FsEntry{Path: name, Size: uint64(max(fi.Size(), 0))}
	switch {
	case fi.Mode().IsRegular():
		e.Kind = "file"
	case fi.IsDir():
		e.Kind = "dir"
	case fi.Mode()&fs.ModeSymlink != 0:
		e.Kind = "symlink"
	default:
		e.Kind = "other"
	}
	if e.Kind == "symlink" {
		// Best effort: a link replaced since lstat keeps an empty target.
		e.Target, _ = os.Readlink(name)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		e.Mode = st.Mode
		mt := st.Mtim.Sec
		e.Modified = &mt
	} else {
		mt := fi.ModTime().Unix()
		e.Modified = &mt
	}
	return e
}

func listDir(dir string) ([]agentproto.FsEntry, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := make([]agentproto.FsEntry, 0, len(des))
	for _, de := range des {
		p := filepath.Join(dir, de.Name())
		fi, err := os.Lstat(p)
		if err != nil {
			// Removed between readdir and lstat.
			continue
		}
		out = append(out, entryOf(p, fi))
	}
	return out, nil
}

// removeFile removes one non-directory (like Rust's fs::remove_file).
func removeFile(name string) error {
	fi, err := os.Lstat(name)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return &fs.PathError{Op: "remove", Path: name, Err: syscall.EISDIR}
	}
	return os.Remove(name)
}

// removeDir removes a directory tree; a missing path or a non-directory is
// an error (like Rust's fs::remove_dir_all).
func removeDir(name string) error {
	fi, err := os.Lstat(name)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return &fs.PathError{Op: "remove_dir", Path: name, Err: syscall.ENOTDIR}
	}
	return os.RemoveAll(name)
}

// copyFile copies one regular file's contents and permission bits.
func copyFile(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return &fs.PathError{Op: "copy", Path: src, Err: errors.New("not a regular file")}
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	if _, err := io.Copy(out, in); err != nil {
		return err
	}
	return out.Chmod(fi.Mode().Perm())
}

// setAttr sets name's permission bits (ignored for a symlink, whose mode
// Linux does not keep) and its modification time (atime too), without
// following a symlink.
func setAttr(name string, mode *uint32, modified *int64) error {
	fi, err := os.Lstat(name)
	if err != nil {
		return err
	}
	if mode != nil && fi.Mode()&fs.ModeSymlink == 0 {
		if err := os.Chmod(name, unixMode(*mode)); err != nil {
			return err
		}
	}
	if modified != nil {
		t := unix.NsecToTimespec(*modified * 1e9)
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, name, []unix.Timespec{t, t}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &fs.PathError{Op: "utimes", Path: name, Err: err}
		}
	}
	return nil
}
