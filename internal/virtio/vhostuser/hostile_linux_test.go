//go:build linux

package vhostuser

import (
	"encoding/binary"
	"errors"
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestHostileAcked sends invalid requests with NEED_REPLY after REPLY_ACK
// was negotiated: each is refused with a failed ack, and the connection
// and a later valid request still work.
func TestHostileAcked(t *testing.T) {
	region := memRegion{GuestPhys: guestPA, Size: memSize, UserAddr: userBase}
	tests := []struct {
		name    string
		req     uint32
		payload func(f *frontend) []byte
		fds     func(f *frontend) []int
	}{
		{"regions overlap in guest memory", VHOST_USER_SET_MEM_TABLE,
			func(*frontend) []byte {
				return memTablePayload(region, memRegion{GuestPhys: guestPA + 0x1000, Size: 0x1000, UserAddr: 0x1000})
			},
			func(f *frontend) []int { return []int{int(f.memfd.Fd()), int(f.memfd.Fd())} }},
		{"regions overlap in user memory", VHOST_USER_SET_MEM_TABLE,
			func(*frontend) []byte {
				return memTablePayload(memRegion{GuestPhys: 0, Size: 0x2000, UserAddr: userBase}, memRegion{GuestPhys: 0x10000, Size: 0x1000, UserAddr: userBase + 0x1000})
			},
			func(f *frontend) []int { return []int{int(f.memfd.Fd()), int(f.memfd.Fd())} }},
		{"region beyond its file", VHOST_USER_SET_MEM_TABLE,
			func(*frontend) []byte {
				return memTablePayload(memRegion{GuestPhys: 0, Size: 2 * memSize, UserAddr: userBase})
			},
			func(f *frontend) []int { return []int{int(f.memfd.Fd())} }},
		{"region offset beyond its file", VHOST_USER_SET_MEM_TABLE,
			func(*frontend) []byte {
				return memTablePayload(memRegion{GuestPhys: 0, Size: 0x1000, UserAddr: userBase, MmapOffset: memSize})
			},
			func(f *frontend) []int { return []int{int(f.memfd.Fd())} }},
		{"region wraps", VHOST_USER_SET_MEM_TABLE,
			func(*frontend) []byte {
				return memTablePayload(memRegion{GuestPhys: ^uint64(0) - 0xfff, Size: 0x2000, UserAddr: userBase})
			},
			func(f *frontend) []int { return []int{int(f.memfd.Fd())} }},
		{"region is not a memfd", VHOST_USER_SET_MEM_TABLE,
			func(*frontend) []byte { return memTablePayload(region) },
			func(f *frontend) []int { return []int{pipeFD(f.t)} }},
		{"fewer descriptors than regions", VHOST_USER_SET_MEM_TABLE,
			func(*frontend) []byte {
				return memTablePayload(region, memRegion{GuestPhys: 0, Size: 0x1000, UserAddr: 0x1000})
			},
			func(f *frontend) []int { return []int{int(f.memfd.Fd())} }},
		{"nine regions", VHOST_USER_SET_MEM_TABLE,
			func(*frontend) []byte {
				b := memTablePayload(region)
				binary.LittleEndian.PutUint32(b, 9)
				return b
			},
			func(f *frontend) []int { return []int{int(f.memfd.Fd())} }},
		{"ring index out of range", VHOST_USER_SET_VRING_NUM,
			func(*frontend) []byte { return state(2, 16) }, nil},
		{"ring size not a power of two", VHOST_USER_SET_VRING_NUM,
			func(*frontend) []byte { return state(0, 12) }, nil},
		{"ring size above maximum", VHOST_USER_SET_VRING_NUM,
			func(*frontend) []byte { return state(0, 2*qemuMaxRing) }, nil},
		{"ring base above 16 bits", VHOST_USER_SET_VRING_BASE,
			func(*frontend) []byte { return state(0, 1<<16) }, nil},
		{"ring address outside memory", VHOST_USER_SET_VRING_ADDR,
			func(*frontend) []byte {
				return addrPayload(vringAddr{Index: 0, Desc: userBase, Used: userBase + memSize, Avail: userBase + 0x1000})
			}, nil},
		{"ring address index out of range", VHOST_USER_SET_VRING_ADDR,
			func(*frontend) []byte { return addrPayload(vringAddr{Index: 7, Desc: userBase}) }, nil},
		{"ring dirty logging", VHOST_USER_SET_VRING_ADDR,
			func(*frontend) []byte {
				return addrPayload(vringAddr{Flags: VHOST_VRING_F_LOG, Desc: userBase, Used: userBase, Avail: userBase})
			}, nil},
		{"kick is not an eventfd", VHOST_USER_SET_VRING_KICK,
			func(*frontend) []byte { return u64(0) },
			func(f *frontend) []int { return []int{pipeFD(f.t)} }},
		{"kick without descriptor", VHOST_USER_SET_VRING_KICK,
			func(*frontend) []byte { return u64(0) }, nil},
		{"call index out of range", VHOST_USER_SET_VRING_CALL,
			func(*frontend) []byte { return u64(200) },
			func(f *frontend) []int { return []int{eventfd(f.t)} }},
		{"unknown vring flag bits", VHOST_USER_SET_VRING_CALL,
			func(*frontend) []byte { return u64(1 << 20) },
			func(f *frontend) []int { return []int{eventfd(f.t)} }},
		{"enable value 2", VHOST_USER_SET_VRING_ENABLE,
			func(*frontend) []byte { return state(0, 2) }, nil},
		{"features not offered", VHOST_USER_SET_FEATURES,
			func(*frontend) []byte { return u64(1 << 60) }, nil},
		{"log feature", VHOST_USER_SET_FEATURES,
			func(*frontend) []byte { return u64(1 << VHOST_F_LOG_ALL) }, nil},
		{"short payload", VHOST_USER_SET_VRING_NUM,
			func(*frontend) []byte { return []byte{0, 0} }, nil},
		{"config beyond 256 bytes", VHOST_USER_SET_CONFIG,
			func(*frontend) []byte { return configMsg{Offset: 250, Data: make([]byte, 10)}.bytes() }, nil},
		{"log base", VHOST_USER_SET_LOG_BASE,
			func(*frontend) []byte { return u64(0) }, nil},
		{"unknown request", 99, func(*frontend) []byte { return nil }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFrontend(t)
			f.negotiate()
			var fds []int
			if tc.fds != nil {
				fds = tc.fds(f)
			}
			if st := f.set(tc.req, tc.payload(f), fds...); st == 0 {
				t.Fatalf("%s accepted; want a failed ack", tc.name)
			}
			// The back-end goes on serving.
			if got := f.get(VHOST_USER_GET_QUEUE_NUM, nil); got != 2 {
				t.Fatalf("GET_QUEUE_NUM after refusal = %d; want 2", got)
			}
			var r rings
			f.startRings(&r)
			f.echo(&r, 1, "still works")
		})
	}
}

func pipeFD(t testing.TB) int {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return int(r.Fd())
}

// TestHostileFatal sends messages that cannot be answered: Serve ends the
// connection with ErrProtocol, resets the device and leaks nothing.
func TestHostileFatal(t *testing.T) {
	raw := func(req, flags, size uint32) []byte {
		b := binary.LittleEndian.AppendUint32(nil, req)
		b = binary.LittleEndian.AppendUint32(b, flags)
		return binary.LittleEndian.AppendUint32(b, size)
	}
	tests := []struct {
		name    string
		started bool // run the whole start sequence first
		send    func(f *frontend)
	}{
		{"oversized payload", true, func(f *frontend) {
			f.conn.Write(raw(VHOST_USER_SET_VRING_NUM, VHOST_USER_VERSION, 1<<20))
		}},
		{"wrong version", false, func(f *frontend) {
			f.conn.Write(raw(VHOST_USER_GET_FEATURES, 2, 0))
		}},
		{"reply flag on a request", false, func(f *frontend) {
			f.conn.Write(raw(VHOST_USER_GET_FEATURES, VHOST_USER_VERSION|VHOST_USER_REPLY_MASK, 0))
		}},
		{"too many descriptors", true, func(f *frontend) {
			fds := make([]int, 12)
			for i := range fds {
				fds[i] = eventfd(f.t)
			}
			f.send(VHOST_USER_SET_VRING_KICK, 0, u64(0), fds...)
		}},
		{"unknown request without ack", true, func(f *frontend) {
			f.send(77, 0, nil)
		}},
		{"GET_VRING_BASE out of range", true, func(f *frontend) {
			f.send(VHOST_USER_GET_VRING_BASE, 0, state(9, 0))
		}},
		{"GET_CONFIG too large", false, func(f *frontend) {
			f.send(VHOST_USER_GET_CONFIG, 0, configMsg{Data: make([]byte, 300)}.bytes())
		}},
		{"bad ring layout without ack", false, func(f *frontend) {
			f.send(VHOST_USER_SET_VRING_NUM, 0, state(0, 3))
		}},
		{"truncated message", true, func(f *frontend) {
			f.conn.Write(raw(VHOST_USER_SET_VRING_NUM, VHOST_USER_VERSION, 8)[:12])
			f.conn.Write([]byte{1, 2})
			f.conn.CloseWrite()
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFrontend(t)
			if tc.started {
				f.negotiate()
				var r rings
				f.startRings(&r)
			}
			tc.send(f)
			err := f.serveErr()
			if tc.name == "truncated message" {
				if err == nil {
					t.Fatal("Serve = nil for a truncated message; want an error")
				}
			} else if !errors.Is(err, ErrProtocol) {
				t.Fatalf("Serve = %v; want ErrProtocol", err)
			}
			if a, rs := f.dev.counts(); a != rs {
				t.Errorf("device activated %d times, reset %d: not left reset", a, rs)
			}
		})
	}
}

// TestGetVringBaseFirst: a front-end stopping a device it never started
// gets an answer at once (QEMU waits for it), with base 0.
func TestGetVringBaseFirst(t *testing.T) {
	f := newFrontend(t)
	for i := range 2 {
		f.send(VHOST_USER_GET_VRING_BASE, 0, state(uint32(i), 0))
		got, err := parseVringState(VHOST_USER_GET_VRING_BASE, f.reply(VHOST_USER_GET_VRING_BASE))
		if err != nil || got != (vringState{uint32(i), 0}) {
			t.Fatalf("GET_VRING_BASE(%d) = %+v, %v; want base 0", i, got, err)
		}
	}
	if a, _ := f.dev.counts(); a != 0 {
		t.Errorf("device activated %d times", a)
	}
}

// TestMemTableReplaced: a new memory table while the device runs stops it,
// unmaps the old table and resumes on the new one.
func TestMemTableReplaced(t *testing.T) {
	f := newFrontend(t)
	f.negotiate()
	var r rings
	f.startRings(&r)
	f.echo(&r, 1, "before")
	f.mustSet(VHOST_USER_SET_MEM_TABLE, memTablePayload(memRegion{GuestPhys: guestPA, Size: memSize, UserAddr: userBase}), int(f.memfd.Fd()))
	if a, rs := f.dev.counts(); a != 2 || rs != 1 {
		t.Fatalf("activations %d resets %d after SET_MEM_TABLE; want 2, 1", a, rs)
	}
	f.echo(&r, 1, "after")
}
