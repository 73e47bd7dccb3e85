package agentclient

import (
	"errors"
	"testing"
)

// TestFsMetaNeedsCapability: without agentproto.CapFsMeta in the ready
// frame (a 0.4.4 agent), Symlink and SetAttr fail before sending anything.
func TestFsMetaNeedsCapability(t *testing.T) {
	c, a := startRelay(t, 0)
	before := a.requests()
	if err := c.Symlink(t.Context(), "t", "/l"); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Symlink = %v; want errors.ErrUnsupported", err)
	}
	if err := c.SetAttr(t.Context(), "/f", nil, nil); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("SetAttr = %v; want errors.ErrUnsupported", err)
	}
	if after := a.requests(); after != before {
		t.Errorf("%d requests sent; want none", after-before)
	}
}

func (a *fakeAgent) requests() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.requestIDs)
}
