//go:build linux

package vhostuser

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"

	"github.com/msb-go/msb/internal/guestmem"
)

// memTable is the front-end's guest memory mapped into this process.
type memTable struct {
	mem     *guestmem.Memory
	regions []memRegion
	maps    [][]byte // whole mappings, for munmap
}

// mapTable maps each region's descriptor MAP_SHARED at its mmap offset.
// It always closes fds: a mapping keeps the memory alive without them.
//
// A region must lie inside its file, which must be a regular file (memfd or
// a file on a RAM file system): touching a mapping past the end of its file
// raises SIGBUS, which kills a Go process. The front-end can still shrink
// the file afterwards unless it sealed it (QEMU's memory-backend-memfd
// does, seal=on by default); an unsealed table is logged.
func mapTable(regions []memRegion, fds []int, log *slog.Logger) (_ *memTable, err error) {
	defer closeFDs(fds)
	if len(fds) != len(regions) {
		return nil, fmt.Errorf("SET_MEM_TABLE: %d descriptors for %d regions: %w", len(fds), len(regions), ErrProtocol)
	}
	t := &memTable{regions: regions}
	defer func() {
		if err != nil {
			t.unmap()
		}
	}()
	page := uint64(os.Getpagesize())
	gr := make([]guestmem.Region, len(regions))
	for i, r := range regions {
		var st unix.Stat_t
		if err := unix.Fstat(fds[i], &st); err != nil {
			return nil, fmt.Errorf("SET_MEM_TABLE: region %d: fstat: %w", i, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			return nil, fmt.Errorf("SET_MEM_TABLE: region %d: descriptor is not a regular file or memfd: %w", i, ErrProtocol)
		}
		if uint64(st.Size) < r.MmapOffset || uint64(st.Size)-r.MmapOffset < r.Size {
			return nil, fmt.Errorf("SET_MEM_TABLE: region %d: %#x bytes at offset %#x beyond file size %#x: %w", i, r.Size, r.MmapOffset, st.Size, ErrProtocol)
		}
		if seals, err := unix.FcntlInt(uintptr(fds[i]), unix.F_GET_SEALS, 0); err != nil || seals&unix.F_SEAL_SHRINK == 0 {
			log.Debug("vhost-user: guest memory file is not sealed against shrinking", "region", i)
		}
		// mmap needs a page-aligned offset; map from the page below.
		delta := r.MmapOffset % page
		m, err := unix.Mmap(fds[i], int64(r.MmapOffset-delta), int(r.Size+delta), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_NORESERVE)
		if err != nil {
			return nil, fmt.Errorf("SET_MEM_TABLE: region %d: mmap %#x bytes: %w", i, r.Size, err)
		}
		t.maps = append(t.maps, m)
		gr[i] = guestmem.Region{Base: guestmem.Addr(r.GuestPhys), Data: m[delta:]}
	}
	if t.mem, err = guestmem.New(gr...); err != nil {
		return nil, fmt.Errorf("SET_MEM_TABLE: %w: %w", ErrProtocol, err)
	}
	return t, nil
}

// translate returns the guest physical address of the front-end user
// address a.
func (t *memTable) translate(a uint64) (guestmem.Addr, bool) {
	for _, r := range t.regions {
		if a >= r.UserAddr && a-r.UserAddr < r.Size {
			return guestmem.Addr(r.GuestPhys + (a - r.UserAddr)), true
		}
	}
	return 0, false
}

// unmap releases the mappings. Nothing may use t.mem afterwards.
func (t *memTable) unmap() {
	var errs []error
	for _, m := range t.maps {
		errs = append(errs, unix.Munmap(m))
	}
	t.maps = nil
	if err := errors.Join(errs...); err != nil {
		// munmap of a mapping this package made cannot fail.
		panic(fmt.Sprintf("vhost-user: munmap guest memory: %v", err))
	}
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}
