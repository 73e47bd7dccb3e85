package i8042

import "testing"

func TestDevice(t *testing.T) {
	type op struct {
		write bool
		off   uint64
		val   uint8
	}
	tests := []struct {
		name      string
		ops       []op
		wantReads []uint8
		wantReset int
	}{
		{"reset", []op{{true, offCommand, 0xfe}}, nil, 1},
		{"reset twice", []op{{true, offCommand, 0xfe}, {true, offCommand, 0xfe}}, nil, 2},
		{"0xfe on data port is not reset", []op{{true, offData, 0xfe}}, nil, 0},
		{"other commands are not reset", []op{{true, offCommand, 0xad}, {true, offCommand, 0xa7}, {true, offCommand, 0xd1}}, nil, 0},
		{"idle status", []op{{false, offCommand, 0}}, []uint8{statusSystem}, 0},
		{"self test", []op{{true, offCommand, 0xaa}, {false, offCommand, 0}, {false, offData, 0}, {false, offCommand, 0}}, []uint8{statusSystem | statusOBF, 0x55, statusSystem}, 0},
		{"command byte round trip", []op{
			{true, offCommand, 0x20}, {false, offData, 0},
			{true, offCommand, 0x60}, {true, offData, 0x45},
			{true, offCommand, 0x20}, {false, offData, 0},
		}, []uint8{0x01, 0x45}, 0},
		{"command aborts pending command byte write", []op{
			{true, offCommand, 0x60}, {true, offCommand, 0xad}, {true, offData, 0x77},
			{true, offCommand, 0x20}, {false, offData, 0},
		}, []uint8{0x01}, 0},
		{"unknown offset", []op{{false, 2, 0}, {true, 2, 0xfe}}, []uint8{0xff}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resets := 0
			d := New(func() { resets++ })
			var reads []uint8
			for _, o := range tc.ops {
				if o.write {
					d.Write(o.off, []byte{o.val})
				} else {
					b := []byte{0xee}
					d.Read(o.off, b)
					reads = append(reads, b[0])
				}
			}
			if string(reads) != string(tc.wantReads) {
				t.Errorf("reads % x; want % x", reads, tc.wantReads)
			}
			if resets != tc.wantReset {
				t.Errorf("reset called %d times; want %d", resets, tc.wantReset)
			}
		})
	}
}

func TestNilReset(t *testing.T) {
	d := New(nil)
	d.Write(offCommand, []byte{0xfe}) // must not panic
}
