//go:build linux

package vhostuser

import (
	"encoding/binary"
	"errors"
	"testing"
)

func msg(req, flags uint32, payload []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, req)
	b = binary.LittleEndian.AppendUint32(b, VHOST_USER_VERSION|flags)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

// FuzzMessages decodes a stream of messages and runs each through the
// back-end's request handler (without descriptors, which a byte stream
// cannot carry): nothing may panic, every error wraps ErrProtocol, and the
// device is left reset.
func FuzzMessages(f *testing.F) {
	seq := func(msgs ...[]byte) []byte {
		var b []byte
		for _, m := range msgs {
			b = append(b, m...)
		}
		return b
	}
	f.Add(seq(
		msg(VHOST_USER_GET_FEATURES, 0, nil),
		msg(VHOST_USER_SET_FEATURES, 0, u64(1<<30|1<<32)),
		msg(VHOST_USER_SET_PROTOCOL_FEATURES, 0, u64(1<<VHOST_USER_PROTOCOL_F_REPLY_ACK)),
		msg(VHOST_USER_SET_OWNER, VHOST_USER_NEED_REPLY, nil),
		msg(VHOST_USER_SET_VRING_NUM, VHOST_USER_NEED_REPLY, state(0, 16)),
		msg(VHOST_USER_SET_VRING_BASE, 0, state(1, 7)),
		msg(VHOST_USER_SET_VRING_ADDR, 0, addrPayload(vringAddr{Index: 1, Desc: 0x1000})),
		msg(VHOST_USER_SET_VRING_KICK, 0, u64(VHOST_USER_VRING_NOFD_MASK)),
		msg(VHOST_USER_SET_VRING_CALL, 0, u64(1|VHOST_USER_VRING_NOFD_MASK)),
		msg(VHOST_USER_SET_VRING_ENABLE, 0, state(0, 1)),
		msg(VHOST_USER_GET_VRING_BASE, 0, state(0, 0)),
	))
	f.Add(seq(
		msg(VHOST_USER_GET_CONFIG, 0, configMsg{Offset: 4, Data: make([]byte, 4)}.bytes()),
		msg(VHOST_USER_SET_CONFIG, VHOST_USER_NEED_REPLY, configMsg{Data: []byte("tag")}.bytes()),
		msg(VHOST_USER_SET_MEM_TABLE, 0, memTablePayload(memRegion{Size: 0x1000, UserAddr: 0x1000})),
		msg(VHOST_USER_GET_QUEUE_NUM, 0, nil),
		msg(VHOST_USER_RESET_OWNER, 0, nil),
	))
	f.Add(msg(VHOST_USER_SET_VRING_NUM, 0, state(0, 1<<20)))
	f.Add(msg(99, VHOST_USER_NEED_REPLY, []byte{1, 2, 3}))
	f.Fuzz(func(t *testing.T, data []byte) {
		dev := newEchoDevice()
		b := newBackend(dev, nil)
		defer func() {
			b.close()
			dev.Close()
			if a, r := dev.counts(); a != r {
				t.Errorf("device activated %d times, reset %d", a, r)
			}
		}()
		for len(data) >= headerSize {
			h, err := parseHeader(data[:headerSize])
			if err != nil {
				if !errors.Is(err, ErrProtocol) {
					t.Fatalf("parseHeader error %v does not wrap ErrProtocol", err)
				}
				return
			}
			data = data[headerSize:]
			if int(h.Size) > len(data) {
				return
			}
			p := data[:h.Size]
			data = data[h.Size:]
			reply, err := b.handle(h, p, nil)
			if err != nil && !errors.Is(err, ErrProtocol) {
				t.Fatalf("%s: error %v does not wrap ErrProtocol", requestName(h.Request), err)
			}
			if len(reply) > 0 && len(reply) < headerSize {
				t.Fatalf("%s: reply of %d bytes", requestName(h.Request), len(reply))
			}
		}
	})
}
