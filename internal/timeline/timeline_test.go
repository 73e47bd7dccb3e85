package timeline

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestWrite(t *testing.T) {
	start := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	tests := []struct {
		name  string
		marks []Mark
		want  string
	}{
		{"none", nil, ""},
		{
			// Marks from two processes arrive out of order and print
			// sorted, each with its gap to the one before.
			"merged",
			[]Mark{
				{Stage: "exit", At: at(30), By: "cli"},
				{Stage: "ready", At: at(12), By: "sandbox"},
				{Stage: "spawn", At: at(2), By: "cli"},
			},
			"      2.0       2.0  cli      spawn\n" +
				"     12.0      10.0  sandbox  ready\n" +
				"     30.0      18.0  cli      exit\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := New("cli", start)
			r.Add(tc.marks...)
			var b bytes.Buffer
			if err := r.Write(&b); err != nil {
				t.Fatal(err)
			}
			header, body, _ := strings.Cut(b.String(), "\n")
			if !strings.Contains(header, "stage") {
				t.Errorf("header = %q; want the column names", header)
			}
			if got := body; got != tc.want {
				t.Errorf("Write body =\n%s; want\n%s", got, tc.want)
			}
		})
	}
}

func TestNilRecorder(t *testing.T) {
	ctx := context.Background()
	MarkCtx(ctx, "nothing records this") // must not panic
	var r *Recorder
	r.Mark("x")
	if got := r.Marks(); got != nil {
		t.Errorf("nil recorder Marks() = %v; want nil", got)
	}
	r = New("cli", time.Now())
	MarkCtx(With(ctx, r), "seen")
	if got := r.Marks(); len(got) != 1 || got[0].Stage != "seen" || got[0].By != "cli" {
		t.Errorf("Marks() = %+v; want one cli mark \"seen\"", got)
	}
}
