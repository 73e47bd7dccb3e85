package uart

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type countIRQ struct{ n int }

func (c *countIRQ) Trigger() error { c.n++; return nil }

// op is one register access; for reads, want is the expected value.
type op struct {
	write bool
	reg   uint64
	val   uint8
	want  uint8
}

func w(reg uint64, v uint8) op    { return op{write: true, reg: reg, val: v} }
func r(reg uint64, want uint8) op { return op{reg: reg, want: want} }

func TestRegisters(t *testing.T) {
	tests := []struct {
		name string
		ops  []op
		out  string
	}{
		{"transmit", []op{w(regData, 'h'), w(regData, 'i')}, "hi"},
		{"reset state", []op{r(regIER, 0), r(regIIR, iirNoInt), r(regLCR, 0x03), r(regMCR, mcrOUT2), r(regLSR, lsrTHRE|lsrTEMT), r(regMSR, 0xb0)}, ""},
		{"divisor latch", []op{
			w(regLCR, lcrDLAB|0x03), w(regData, 0x0c), w(regIER, 0x01),
			r(regData, 0x0c), r(regIER, 0x01),
			w(regLCR, 0x03), r(regIER, 0), w(regData, 'x'),
		}, "x"},
		// drivers/tty/serial/8250/8250_port.c autoconfig(): the IER
		// scratch test, then the loopback test expecting MSR 0x90.
		{"linux probe", []op{
			w(regIER, 0), r(regIER, 0), w(regIER, 0x0f), r(regIER, 0x0f), w(regIER, 0),
			w(regMCR, mcrLoop|0x0a), r(regMSR, msrDCD|msrCTS), w(regMCR, 0),
			w(regIIR, fcrEnable), r(regIIR, iirFIFO|iirNoInt),
			w(regSCR, 0xa5), r(regSCR, 0xa5),
		}, ""},
		{"ier keeps low nibble", []op{w(regIER, 0xff), r(regIER, 0x0f)}, ""},
		{"loopback echoes", []op{
			w(regMCR, mcrLoop), w(regData, 'q'), r(regLSR, lsrTHRE|lsrTEMT|lsrDR), r(regData, 'q'), r(regLSR, lsrTHRE|lsrTEMT),
		}, ""},
		{"empty rbr reads 0", []op{r(regData, 0)}, ""},
		{"unknown offset", []op{r(9, 0xff), w(9, 1)}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			u := New(Config{Out: &out})
			for i, o := range tc.ops {
				if o.write {
					u.Write(o.reg, []byte{o.val})
					continue
				}
				b := []byte{0xee, 0xee}
				u.Read(o.reg, b)
				if b[0] != o.want || b[1] != 0 {
					t.Errorf("op %d: read reg %d = %#x (wide % x); want %#x", i, o.reg, b[0], b, o.want)
				}
			}
			if out.String() != tc.out {
				t.Errorf("output %q; want %q", out.String(), tc.out)
			}
		})
	}
}

func TestInterrupts(t *testing.T) {
	tests := []struct {
		name     string
		ops      []op
		rx       string
		wantIRQs int
	}{
		{"thr interrupt off", []op{w(regData, 'a'), r(regIIR, iirNoInt)}, "", 0},
		{"enabling thri raises it", []op{w(regIER, ierTHR), r(regIIR, iirTHRI), r(regIIR, iirNoInt)}, "", 1},
		{"each thr write re-arms", []op{w(regIER, ierTHR), r(regIIR, iirTHRI), w(regData, 'a'), w(regData, 'b'), r(regIIR, iirTHRI), r(regIIR, iirNoInt)}, "", 3},
		{"rx data raises rdi", []op{w(regIER, ierRDI)}, "z", 1},
		{"rdi before thri", []op{w(regIER, ierRDI|ierTHR), r(regIIR, iirRDI), r(regData, 'z'), r(regIIR, iirTHRI), r(regIIR, iirNoInt)}, "z", 1},
		{"rx without rdi enabled", []op{r(regIIR, iirNoInt), r(regData, 'z')}, "z", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			irq := &countIRQ{}
			u := New(Config{IRQ: irq})
			// Enqueue after the first op so an enabled RDI raises.
			for i, o := range tc.ops {
				if o.write {
					u.Write(o.reg, []byte{o.val})
				} else {
					b := []byte{0}
					u.Read(o.reg, b)
					if b[0] != o.want {
						t.Errorf("op %d: read reg %d = %#x; want %#x", i, o.reg, b[0], o.want)
					}
				}
				if i == 0 && tc.rx != "" {
					if n := u.Enqueue([]byte(tc.rx)); n != len(tc.rx) {
						t.Fatalf("Enqueue = %d; want %d", n, len(tc.rx))
					}
				}
			}
			if irq.n != tc.wantIRQs {
				t.Errorf("IRQ raised %d times; want %d", irq.n, tc.wantIRQs)
			}
		})
	}
}

func TestOutputBounds(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	tests := []struct {
		name    string
		cfg     Config
		steps   []int         // bytes to write before each clock advance
		advance time.Duration // between steps
		want    Stats
	}{
		{"size cap", Config{MaxBytes: 5, RateBytesPerSec: -1}, []int{10}, 0, Stats{Written: 5, Dropped: 5}},
		{"unlimited", Config{MaxBytes: -1, RateBytesPerSec: -1}, []int{1000}, 0, Stats{Written: 1000}},
		{"burst then drop", Config{RateBytesPerSec: 10, BurstBytes: 4}, []int{6}, 0, Stats{Written: 4, Dropped: 2}},
		{"refill capped at burst", Config{RateBytesPerSec: 10, BurstBytes: 4}, []int{6, 6}, 10 * time.Second, Stats{Written: 8, Dropped: 4}},
		{"refill by rate", Config{RateBytesPerSec: 10, BurstBytes: 4}, []int{4, 4}, 200 * time.Millisecond, Stats{Written: 6, Dropped: 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			tc.cfg.Out = &out
			tc.cfg.Now = clock
			u := New(tc.cfg)
			for _, n := range tc.steps {
				for range n {
					u.Write(regData, []byte{'x'})
				}
				now = now.Add(tc.advance)
			}
			if diff := cmp.Diff(tc.want, u.Stats()); diff != "" {
				t.Errorf("Stats() mismatch (-want +got):\n%s", diff)
			}
			if int64(out.Len()) != tc.want.Written {
				t.Errorf("wrote %d bytes to Out; want %d", out.Len(), tc.want.Written)
			}
		})
	}
}

func TestEnqueueBounded(t *testing.T) {
	u := New(Config{})
	if n := u.Enqueue(make([]byte, 100)); n != rxCap {
		t.Errorf("Enqueue(100 bytes) = %d; want %d", n, rxCap)
	}
	if n := u.Enqueue([]byte{1}); n != 0 {
		t.Errorf("Enqueue on full FIFO = %d; want 0", n)
	}
	u.Write(regIIR, []byte{fcrEnable | fcrClearRx})
	b := []byte{0}
	u.Read(regLSR, b)
	if b[0]&lsrDR != 0 {
		t.Errorf("LSR after FCR clear = %#x; want DR clear", b[0])
	}
}

func TestTransmitDoesNotAllocate(t *testing.T) {
	u := New(Config{Out: &bytes.Buffer{}, MaxBytes: -1, RateBytesPerSec: -1})
	data := []byte{'a'}
	u.Write(regData, data)
	if n := testing.AllocsPerRun(100, func() { u.Write(regData, data) }); n > 0.1 {
		t.Errorf("THR write allocates %.1f times; want 0", n)
	}
}

// FuzzRegisters drives arbitrary guest register accesses and checks that
// the output and FIFO bounds hold.
func FuzzRegisters(f *testing.F) {
	f.Add([]byte{0x00, 'a', 0x81, 0x0f, 0x14, 0x10, 0x00, 'q', 0x82, 0x01})
	f.Add([]byte{0x13, 0x80, 0x00, 0x0c, 0x13, 0x03, 0x00, 'x'})
	f.Fuzz(func(t *testing.T, ops []byte) {
		var out bytes.Buffer
		u := New(Config{Out: &out, MaxBytes: 16, IRQ: &countIRQ{}})
		for i := 0; i+1 < len(ops); i += 2 {
			reg := uint64(ops[i] & 0x0f)
			if ops[i]&0x10 != 0 {
				u.Write(reg, ops[i+1:i+2])
			} else {
				u.Read(reg, make([]byte, 1+int(ops[i+1]&3)))
			}
			if ops[i]&0x20 != 0 {
				u.Enqueue(ops[i : i+2])
			}
		}
		if out.Len() > 16 {
			t.Fatalf("wrote %d bytes past MaxBytes 16", out.Len())
		}
		if n := len(u.rx); n > rxCap {
			t.Fatalf("rx FIFO holds %d bytes; cap %d", n, rxCap)
		}
	})
}
