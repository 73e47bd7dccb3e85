package vhostuser

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
)

// header is the vhost-user message header (vhost-user.rst "Header").
type header struct {
	Request uint32
	Flags   uint32
	Size    uint32
}

// parseHeader decodes and validates a header: protocol version 1, not a
// reply, a payload of at most maxPayload bytes.
func parseHeader(b []byte) (header, error) {
	if len(b) != headerSize {
		return header{}, fmt.Errorf("header of %d bytes: %w", len(b), ErrProtocol)
	}
	h := header{
		Request: binary.LittleEndian.Uint32(b[0:]),
		Flags:   binary.LittleEndian.Uint32(b[4:]),
		Size:    binary.LittleEndian.Uint32(b[8:]),
	}
	if v := h.Flags & VHOST_USER_VERSION_MASK; v != VHOST_USER_VERSION {
		return h, fmt.Errorf("%s: version %d: %w", requestName(h.Request), v, ErrProtocol)
	}
	if h.Flags&VHOST_USER_REPLY_MASK != 0 {
		return h, fmt.Errorf("%s: reply flag on a request: %w", requestName(h.Request), ErrProtocol)
	}
	if h.Size > maxPayload {
		return h, fmt.Errorf("%s: payload of %d bytes exceeds %d: %w", requestName(h.Request), h.Size, maxPayload, ErrProtocol)
	}
	return h, nil
}

func (h header) needReply() bool { return h.Flags&VHOST_USER_NEED_REPLY != 0 }

// encodeReply returns a reply message to request req carrying payload.
func encodeReply(req uint32, payload []byte) []byte {
	b := make([]byte, headerSize+len(payload))
	binary.LittleEndian.PutUint32(b[0:], req)
	binary.LittleEndian.PutUint32(b[4:], VHOST_USER_VERSION|VHOST_USER_REPLY_MASK)
	binary.LittleEndian.PutUint32(b[8:], uint32(len(payload)))
	copy(b[headerSize:], payload)
	return b
}

func u64Payload(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

func parseU64(req uint32, p []byte) (uint64, error) {
	if len(p) != 8 {
		return 0, fmt.Errorf("%s: payload of %d bytes, want 8: %w", requestName(req), len(p), ErrProtocol)
	}
	return binary.LittleEndian.Uint64(p), nil
}

// vringState mirrors struct vhost_vring_state.
type vringState struct {
	Index uint32
	Num   uint32
}

func parseVringState(req uint32, p []byte) (vringState, error) {
	if len(p) != vringStateSize {
		return vringState{}, fmt.Errorf("%s: payload of %d bytes, want %d: %w", requestName(req), len(p), vringStateSize, ErrProtocol)
	}
	return vringState{Index: binary.LittleEndian.Uint32(p[0:]), Num: binary.LittleEndian.Uint32(p[4:])}, nil
}

func (s vringState) bytes() []byte {
	b := binary.LittleEndian.AppendUint32(nil, s.Index)
	return binary.LittleEndian.AppendUint32(b, s.Num)
}

// vringAddr mirrors struct vhost_vring_addr. The ring addresses are the
// front-end's user (virtual) addresses, translated through the memory
// table.
type vringAddr struct {
	Index uint32
	Flags uint32
	Desc  uint64
	Used  uint64
	Avail uint64
	Log   uint64
}

func parseVringAddr(p []byte) (vringAddr, error) {
	if len(p) != vringAddrSize {
		return vringAddr{}, fmt.Errorf("SET_VRING_ADDR: payload of %d bytes, want %d: %w", len(p), vringAddrSize, ErrProtocol)
	}
	return vringAddr{
		Index: binary.LittleEndian.Uint32(p[0:]),
		Flags: binary.LittleEndian.Uint32(p[4:]),
		Desc:  binary.LittleEndian.Uint64(p[8:]),
		Used:  binary.LittleEndian.Uint64(p[16:]),
		Avail: binary.LittleEndian.Uint64(p[24:]),
		Log:   binary.LittleEndian.Uint64(p[32:]),
	}, nil
}

// memRegion is one region of SET_MEM_TABLE (vhost-user.rst "Memory region
// description").
type memRegion struct {
	GuestPhys  uint64
	Size       uint64
	UserAddr   uint64
	MmapOffset uint64
}

// parseMemTable decodes SET_MEM_TABLE's payload and validates it: 1 to
// VHOST_MEMORY_BASELINE_NREGIONS non-empty regions whose guest-physical,
// user and file ranges do not wrap, and which overlap neither in guest
// physical nor in user address space.
func parseMemTable(p []byte) ([]memRegion, error) {
	if len(p) < memTableHeader {
		return nil, fmt.Errorf("SET_MEM_TABLE: payload of %d bytes: %w", len(p), ErrProtocol)
	}
	n := binary.LittleEndian.Uint32(p)
	if n == 0 || n > VHOST_MEMORY_BASELINE_NREGIONS {
		return nil, fmt.Errorf("SET_MEM_TABLE: %d regions, want 1 to %d: %w", n, VHOST_MEMORY_BASELINE_NREGIONS, ErrProtocol)
	}
	// QEMU sends the whole fixed-size array; accept either that or just
	// the regions in use.
	if want := memTableHeader + int(n)*memRegionSize; len(p) != want && len(p) != memTableHeader+VHOST_MEMORY_BASELINE_NREGIONS*memRegionSize {
		return nil, fmt.Errorf("SET_MEM_TABLE: payload of %d bytes for %d regions: %w", len(p), n, ErrProtocol)
	}
	rs := make([]memRegion, n)
	for i := range rs {
		b := p[memTableHeader+i*memRegionSize:]
		r := memRegion{
			GuestPhys:  binary.LittleEndian.Uint64(b[0:]),
			Size:       binary.LittleEndian.Uint64(b[8:]),
			UserAddr:   binary.LittleEndian.Uint64(b[16:]),
			MmapOffset: binary.LittleEndian.Uint64(b[24:]),
		}
		if r.Size == 0 || r.Size > math.MaxInt64/2 {
			return nil, fmt.Errorf("SET_MEM_TABLE: region %d: size %#x: %w", i, r.Size, ErrProtocol)
		}
		for _, start := range []uint64{r.GuestPhys, r.UserAddr, r.MmapOffset} {
			if _, carry := bits.Add64(start, r.Size, 0); carry != 0 {
				return nil, fmt.Errorf("SET_MEM_TABLE: region %d: %#x+%#x wraps: %w", i, start, r.Size, ErrProtocol)
			}
		}
		if r.MmapOffset > math.MaxInt64/2 {
			return nil, fmt.Errorf("SET_MEM_TABLE: region %d: mmap offset %#x: %w", i, r.MmapOffset, ErrProtocol)
		}
		for j, o := range rs[:i] {
			if overlaps(r.GuestPhys, r.Size, o.GuestPhys, o.Size) || overlaps(r.UserAddr, r.Size, o.UserAddr, o.Size) {
				return nil, fmt.Errorf("SET_MEM_TABLE: regions %d and %d overlap: %w", j, i, ErrProtocol)
			}
		}
		rs[i] = r
	}
	return rs, nil
}

// overlaps reports whether [a, a+an) and [b, b+bn) intersect; the ranges
// do not wrap.
func overlaps(a, an, b, bn uint64) bool { return a < b+bn && b < a+an }

// configMsg is the payload of GET_CONFIG and SET_CONFIG (vhost-user.rst
// "Virtio device config space").
type configMsg struct {
	Offset uint32
	Size   uint32
	Flags  uint32
	Data   []byte
}

func parseConfig(req uint32, p []byte) (configMsg, error) {
	if len(p) < configHeader {
		return configMsg{}, fmt.Errorf("%s: payload of %d bytes: %w", requestName(req), len(p), ErrProtocol)
	}
	c := configMsg{
		Offset: binary.LittleEndian.Uint32(p[0:]),
		Size:   binary.LittleEndian.Uint32(p[4:]),
		Flags:  binary.LittleEndian.Uint32(p[8:]),
	}
	if c.Size > VHOST_USER_MAX_CONFIG_SIZE || c.Offset > VHOST_USER_MAX_CONFIG_SIZE-c.Size {
		return configMsg{}, fmt.Errorf("%s: offset %d size %d beyond %d bytes: %w", requestName(req), c.Offset, c.Size, VHOST_USER_MAX_CONFIG_SIZE, ErrProtocol)
	}
	if len(p) != configHeader+int(c.Size) {
		return configMsg{}, fmt.Errorf("%s: payload of %d bytes for %d config bytes: %w", requestName(req), len(p), c.Size, ErrProtocol)
	}
	c.Data = p[configHeader:]
	return c, nil
}

func (c configMsg) bytes() []byte {
	b := binary.LittleEndian.AppendUint32(nil, c.Offset)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(c.Data)))
	b = binary.LittleEndian.AppendUint32(b, c.Flags)
	return append(b, c.Data...)
}

var requestNames = map[uint32]string{
	VHOST_USER_GET_FEATURES:          "GET_FEATURES",
	VHOST_USER_SET_FEATURES:          "SET_FEATURES",
	VHOST_USER_SET_OWNER:             "SET_OWNER",
	VHOST_USER_RESET_OWNER:           "RESET_OWNER",
	VHOST_USER_SET_MEM_TABLE:         "SET_MEM_TABLE",
	VHOST_USER_SET_LOG_BASE:          "SET_LOG_BASE",
	VHOST_USER_SET_LOG_FD:            "SET_LOG_FD",
	VHOST_USER_SET_VRING_NUM:         "SET_VRING_NUM",
	VHOST_USER_SET_VRING_ADDR:        "SET_VRING_ADDR",
	VHOST_USER_SET_VRING_BASE:        "SET_VRING_BASE",
	VHOST_USER_GET_VRING_BASE:        "GET_VRING_BASE",
	VHOST_USER_SET_VRING_KICK:        "SET_VRING_KICK",
	VHOST_USER_SET_VRING_CALL:        "SET_VRING_CALL",
	VHOST_USER_SET_VRING_ERR:         "SET_VRING_ERR",
	VHOST_USER_GET_PROTOCOL_FEATURES: "GET_PROTOCOL_FEATURES",
	VHOST_USER_SET_PROTOCOL_FEATURES: "SET_PROTOCOL_FEATURES",
	VHOST_USER_GET_QUEUE_NUM:         "GET_QUEUE_NUM",
	VHOST_USER_SET_VRING_ENABLE:      "SET_VRING_ENABLE",
	VHOST_USER_SET_BACKEND_REQ_FD:    "SET_BACKEND_REQ_FD",
	VHOST_USER_GET_CONFIG:            "GET_CONFIG",
	VHOST_USER_SET_CONFIG:            "SET_CONFIG",
	VHOST_USER_RESET_DEVICE:          "RESET_DEVICE",
	VHOST_USER_GET_MAX_MEM_SLOTS:     "GET_MAX_MEM_SLOTS",
}

// requestName names a request for errors and logs.
func requestName(req uint32) string {
	if n, ok := requestNames[req]; ok {
		return n
	}
	return fmt.Sprintf("request %d", req)
}
