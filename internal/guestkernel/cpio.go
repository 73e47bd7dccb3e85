package guestkernel

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
)

// CPIOWriter writes a cpio archive in the "newc" format the Linux initramfs
// unpacker reads (Documentation/driver-api/early-userspace/buffer-format.rst).
// It is not safe for concurrent use. Close writes the trailer; the result may
// be concatenated with other newc archives, which the kernel unpacks in order.
type CPIOWriter struct {
	w     io.Writer
	n     int64 // bytes written, for 4-byte alignment
	ino   uint32
	names map[string]bool
	err   error
}

// NewCPIOWriter returns a writer that appends newc entries to w.
func NewCPIOWriter(w io.Writer) *CPIOWriter {
	return &CPIOWriter{w: w, ino: 720, names: map[string]bool{}}
}

// Mode bits of the newc header (S_IFMT values from <sys/stat.h>).
const (
	modeDir     = 0o040000
	modeRegular = 0o100000
	modeSymlink = 0o120000
	modeChar    = 0o020000
)

// Entry is one member of an initramfs.
type Entry struct {
	Name   string      // path inside the archive, relative ("init", "bin/busybox")
	Mode   fs.FileMode // permission bits and type (fs.ModeDir, fs.ModeSymlink, fs.ModeCharDevice)
	Data   []byte      // contents of a regular file
	Target string      // symlink target
	Major  uint32      // device numbers of a character device
	Minor  uint32
}

// Add writes one entry. Parent directories must have been added first; the
// kernel does not create them.
func (c *CPIOWriter) Add(e Entry) error {
	if c.err != nil {
		return c.err
	}
	name := path.Clean(strings.TrimPrefix(e.Name, "/"))
	if name == "." || name == ".." || strings.HasPrefix(name, "../") {
		return fmt.Errorf("cpio: invalid name %q", e.Name)
	}
	if c.names[name] {
		return fmt.Errorf("cpio: duplicate entry %q", name)
	}
	c.names[name] = true
	mode := uint32(e.Mode.Perm())
	if e.Mode&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if e.Mode&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if e.Mode&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	var body []byte
	var rmaj, rmin uint32
	nlink := uint32(1)
	switch {
	case e.Mode.IsDir():
		mode |= modeDir
		nlink = 2
	case e.Mode&fs.ModeSymlink != 0:
		mode |= modeSymlink
		body = []byte(e.Target)
	case e.Mode&fs.ModeCharDevice != 0:
		mode |= modeChar
		rmaj, rmin = e.Major, e.Minor
	case e.Mode.IsRegular():
		mode |= modeRegular
		body = e.Data
	default:
		return fmt.Errorf("cpio: %s: unsupported file type %v", name, e.Mode.Type())
	}
	c.ino++
	return c.write(name, c.ino, mode, nlink, body, rmaj, rmin)
}

func (c *CPIOWriter) write(name string, ino, mode, nlink uint32, body []byte, rmaj, rmin uint32) error {
	if uint64(len(body)) > 0xFFFFFFFF {
		return fmt.Errorf("cpio: %s: file too large", name)
	}
	// 13 fields of 8 hex digits after the magic; mtime 0 keeps the archive
	// reproducible, which lets callers cache it by content hash.
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, len(body), 0, 0, rmaj, rmin, len(name)+1, 0)
	c.put([]byte(hdr))
	c.put([]byte(name))
	c.put([]byte{0})
	c.pad()
	c.put(body)
	c.pad()
	return c.err
}

func (c *CPIOWriter) put(p []byte) {
	if c.err != nil || len(p) == 0 {
		return
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil {
		c.err = fmt.Errorf("cpio: write: %w", err)
	}
}

func (c *CPIOWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.put(make([]byte, 4-r))
	}
}

// Close writes the trailer entry and pads the archive to a 512-byte boundary.
// It does not close the underlying writer.
func (c *CPIOWriter) Close() error {
	if c.err != nil {
		return c.err
	}
	if err := c.write("TRAILER!!!", 0, 0, 1, nil, 0, 0); err != nil {
		return err
	}
	if r := c.n % 512; r != 0 {
		c.put(make([]byte, 512-r))
	}
	if c.err == nil {
		c.err = errors.New("cpio: writer closed")
		return nil
	}
	return c.err
}
