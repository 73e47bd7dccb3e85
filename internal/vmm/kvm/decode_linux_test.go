package kvm

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeRun returns a VCPU whose kvm_run is ordinary memory, for decoding
// tests without /dev/kvm.
func fakeRun(reason ExitReason) *VCPU {
	c := &VCPU{run: make([]byte, sizeofRun+0x1000)}
	*runField[uint32](c, offsetofRunExitReason) = uint32(reason)
	return c
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		reason  ExitReason
		setup   func(c *VCPU)
		want    Exit
		wantErr error
	}{
		{
			name:   "io out",
			reason: KVM_EXIT_IO,
			setup: func(c *VCPU) {
				*runField[runIO](c, sizeofRunHeader) = runIO{Direction: KVM_EXIT_IO_OUT, Size: 2, Port: 0x3f8, Count: 2, Offset: 0x1000}
				copy(c.run[0x1000:], []byte{1, 2, 3, 4})
			},
			want: Exit{Reason: KVM_EXIT_IO, IO: IOExit{Port: 0x3f8, Size: 2, Count: 2, Out: true, Data: []byte{1, 2, 3, 4}}},
		},
		{
			name:   "io data past mapping",
			reason: KVM_EXIT_IO,
			setup: func(c *VCPU) {
				*runField[runIO](c, sizeofRunHeader) = runIO{Size: 4, Count: 1, Offset: uint64(len(c.run)) - 3}
			},
			want:    Exit{Reason: KVM_EXIT_IO},
			wantErr: ErrBadExit,
		},
		{
			name:   "io count overflow",
			reason: KVM_EXIT_IO,
			setup: func(c *VCPU) {
				*runField[runIO](c, sizeofRunHeader) = runIO{Size: 255, Count: 0xffffffff, Offset: 0x1000}
			},
			want:    Exit{Reason: KVM_EXIT_IO},
			wantErr: ErrBadExit,
		},
		{
			name:   "io offset huge",
			reason: KVM_EXIT_IO,
			setup: func(c *VCPU) {
				*runField[runIO](c, sizeofRunHeader) = runIO{Size: 1, Count: 1, Offset: ^uint64(0)}
			},
			want:    Exit{Reason: KVM_EXIT_IO},
			wantErr: ErrBadExit,
		},
		{
			name:   "mmio write",
			reason: KVM_EXIT_MMIO,
			setup: func(c *VCPU) {
				*runField[runMMIO](c, sizeofRunHeader) = runMMIO{Phys_addr: 0xd0000050, Data: [8]byte{9, 8, 7, 6}, Len: 4, Is_write: 1}
			},
			want: Exit{Reason: KVM_EXIT_MMIO, MMIO: MMIOExit{Addr: 0xd0000050, Write: true, Data: []byte{9, 8, 7, 6}}},
		},
		{
			name:   "mmio len clamped",
			reason: KVM_EXIT_MMIO,
			setup: func(c *VCPU) {
				*runField[runMMIO](c, sizeofRunHeader) = runMMIO{Phys_addr: 1, Len: 100}
			},
			want: Exit{Reason: KVM_EXIT_MMIO, MMIO: MMIOExit{Addr: 1, Data: make([]byte, 8)}},
		},
		{
			name:   "system event",
			reason: KVM_EXIT_SYSTEM_EVENT,
			setup: func(c *VCPU) {
				*runField[runSystemEvent](c, sizeofRunHeader) = runSystemEvent{Type: KVM_SYSTEM_EVENT_RESET, Flags: 3}
			},
			want: Exit{Reason: KVM_EXIT_SYSTEM_EVENT, SystemEvent: SystemEventExit{Type: KVM_SYSTEM_EVENT_RESET, Flags: 3}},
		},
		{
			name:   "internal error",
			reason: KVM_EXIT_INTERNAL_ERROR,
			setup: func(c *VCPU) {
				*runField[runInternal](c, sizeofRunHeader) = runInternal{Suberror: KVM_INTERNAL_ERROR_EMULATION, Ndata: 2, Data: [16]uint64{7, 8}}
			},
			want: Exit{Reason: KVM_EXIT_INTERNAL_ERROR, Internal: InternalErrorExit{Suberror: KVM_INTERNAL_ERROR_EMULATION, Data: []uint64{7, 8}}},
		},
		{
			name:   "internal error ndata clamped",
			reason: KVM_EXIT_INTERNAL_ERROR,
			setup: func(c *VCPU) {
				*runField[runInternal](c, sizeofRunHeader) = runInternal{Ndata: 1000}
			},
			want: Exit{Reason: KVM_EXIT_INTERNAL_ERROR, Internal: InternalErrorExit{Data: make([]uint64, 16)}},
		},
		{
			name:   "fail entry",
			reason: KVM_EXIT_FAIL_ENTRY,
			setup: func(c *VCPU) {
				*runField[runFailEntry](c, sizeofRunHeader) = runFailEntry{Entry_failure_reason: 0x80000021, Cpu: 1}
			},
			want: Exit{Reason: KVM_EXIT_FAIL_ENTRY, FailEntry: FailEntryExit{HardwareReason: 0x80000021, CPU: 1}},
		},
		{
			name:   "unknown",
			reason: KVM_EXIT_UNKNOWN,
			setup:  func(c *VCPU) { *runField[runHW](c, sizeofRunHeader) = runHW{Exit_reason: 42} },
			want:   Exit{Reason: KVM_EXIT_UNKNOWN, HardwareReason: 42},
		},
		{name: "hlt", reason: KVM_EXIT_HLT, setup: func(*VCPU) {}, want: Exit{Reason: KVM_EXIT_HLT}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := fakeRun(tc.reason)
			tc.setup(c)
			got, err := c.decode()
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("decode() error = %v; want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("decode() mismatch (-want +got):\n%s", diff)
			}
			if s := got.String(); s == "" {
				t.Errorf("Exit.String() is empty")
			}
		})
	}
}

// TestDecodeAliasesRun checks that IO data is the kvm_run buffer itself, so
// that a handler answering an IN exit writes where KVM reads.
func TestDecodeAliasesRun(t *testing.T) {
	c := fakeRun(KVM_EXIT_IO)
	*runField[runIO](c, sizeofRunHeader) = runIO{Size: 1, Count: 1, Offset: 0x1000}
	e, err := c.decode()
	if err != nil {
		t.Fatal(err)
	}
	e.IO.Data[0] = 0x5a
	if c.run[0x1000] != 0x5a {
		t.Errorf("IO.Data does not alias kvm_run")
	}
	if cap(e.IO.Data) != 1 {
		t.Errorf("cap(IO.Data) = %d; want 1 so appends cannot scribble on kvm_run", cap(e.IO.Data))
	}
}

func TestSetImmediateExit(t *testing.T) {
	c := &VCPU{run: make([]byte, sizeofRun)}
	c.run[0] = 0xaa // request_interrupt_window must survive
	c.run[2] = 0xbb
	c.SetImmediateExit(true)
	if c.run[offsetofRunImmediateExit] != 1 || c.run[0] != 0xaa || c.run[2] != 0xbb {
		t.Errorf("after SetImmediateExit(true): % x; want aa 01 bb", c.run[:3])
	}
	c.SetImmediateExit(false)
	if c.run[offsetofRunImmediateExit] != 0 || c.run[0] != 0xaa || c.run[2] != 0xbb {
		t.Errorf("after SetImmediateExit(false): % x; want aa 00 bb", c.run[:3])
	}
}
