package supervisor

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/msb-go/msb/internal/agentproto"
)

// TestGuestMarks places core.ready's times on the host clock, and gives a
// lying agent nothing beyond bounded, printable marks within its own boot.
func TestGuestMarks(t *testing.T) {
	now := time.Unix(1000, 0)
	ms := func(n uint64) uint64 { return n * 1e6 }
	many := make([]agentproto.InitStage, 1000)
	for i := range many {
		many[i] = agentproto.InitStage{Name: "s", Ns: ms(1500)}
	}
	tests := []struct {
		name  string
		ready agentproto.Ready
		want  []string // "stage@ms before now"
	}{
		{"honest", agentproto.Ready{InitTimeNs: ms(1000), ReadyTimeNs: ms(2000), InitStages: []agentproto.InitStage{
			{Name: "root assembled", Ns: ms(1200)}, {Name: "network configured", Ns: ms(1900)},
		}}, []string{"guest: kernel clock starts (inferred)@2000", "guest: agentd starts (inferred)@1000",
			"guest: root assembled@800", "guest: network configured@100"}},
		{"no stages (older agent)", agentproto.Ready{InitTimeNs: ms(1000), ReadyTimeNs: ms(2000)},
			[]string{"guest: kernel clock starts (inferred)@2000", "guest: agentd starts (inferred)@1000"}},
		{"stages outside init..ready dropped", agentproto.Ready{InitTimeNs: ms(1000), ReadyTimeNs: ms(2000),
			InitStages: []agentproto.InitStage{{Name: "early", Ns: ms(10)}, {Name: "late", Ns: ms(3000)},
				{Name: "wrapped", Ns: math.MaxUint64}}},
			[]string{"guest: kernel clock starts (inferred)@2000", "guest: agentd starts (inferred)@1000"}},
		{"init after ready", agentproto.Ready{InitTimeNs: ms(3000), ReadyTimeNs: ms(2000),
			InitStages: []agentproto.InitStage{{Name: "x", Ns: ms(2500)}}},
			[]string{"guest: kernel clock starts (inferred)@2000"}},
		{"ready beyond int64", agentproto.Ready{InitTimeNs: 1, ReadyTimeNs: math.MaxUint64}, nil},
		{"control characters and length", agentproto.Ready{InitTimeNs: ms(1000), ReadyTimeNs: ms(2000),
			InitStages: []agentproto.InitStage{{Name: "\x1b[2Jcleared\n" + strings.Repeat("a", 200), Ns: ms(1500)},
				{Name: "\x00\x7f\xff", Ns: ms(1500)}}},
			[]string{"guest: kernel clock starts (inferred)@2000", "guest: agentd starts (inferred)@1000",
				"guest: [2Jcleared" + strings.Repeat("a", agentproto.MaxInitStageName-len("[2Jcleared")) + "@500",
				"guest: ?@500"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, m := range guestMarks(tt.ready, now) {
				got = append(got, m.Stage+"@"+strconv.FormatInt(now.Sub(m.At).Milliseconds(), 10))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("guestMarks =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
	t.Run("at most MaxInitStages", func(t *testing.T) {
		got := guestMarks(agentproto.Ready{InitTimeNs: ms(1000), ReadyTimeNs: ms(2000), InitStages: many}, now)
		if want := 2 + agentproto.MaxInitStages; len(got) != want {
			t.Errorf("%d marks, want %d", len(got), want)
		}
	})
}
