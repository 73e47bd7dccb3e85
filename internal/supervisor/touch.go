package supervisor

import (
	"os"
	"time"

	"github.com/msb-go/msb/internal/launch"
)

// Touched is an ActivitySource that adds host-requested activity to
// another source's: the modification time of the file at Path, which
// `msb touch` (Manager.Touch) sets to now. A missing file adds nothing.
//
// A file rather than a message keeps touch independent of the relay and
// of the guest: it works while the agent is busy or wedged, and costs the
// watcher one stat a second.
type Touched struct {
	Source ActivitySource
	Path   string
	// Ready, when set, is the earliest activity reported: when the guest
	// became ready. The relay's clock starts before the guest boots, and
	// without it a boot longer than the idle timeout would stop the
	// sandbox at the first check after it became ready.
	Ready time.Time
	// Now defaults to time.Now; a modification time in the future counts
	// as now, so a skewed or hostile mtime cannot postpone the idle stop
	// beyond one timeout.
	Now func() time.Time
}

var _ ActivitySource = Touched{}

// Activity returns Source's activity with LastActivity moved forward to
// Ready or the touch file's modification time when either is later. The result is
// known (ok) only when Source's is: a touch never turns an unknown
// activity into a known one.
func (t Touched) Activity() (launch.Heartbeat, bool) {
	hb, ok := t.Source.Activity()
	if !ok {
		return hb, false
	}
	if t.Ready.After(hb.LastActivity) {
		hb.LastActivity = t.Ready
	}
	fi, err := os.Stat(t.Path)
	if err != nil {
		return hb, true
	}
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	mt := fi.ModTime()
	if n := now(); mt.After(n) {
		mt = n
	}
	if mt.After(hb.LastActivity) {
		hb.LastActivity = mt
	}
	return hb, true
}
