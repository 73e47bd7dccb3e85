package agentproto

import (
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// FsOpKind names an fs operation; it is the variant tag on the wire.
type FsOpKind string

// The fs operations (reference §3.2).
const (
	FsStat      FsOpKind = "Stat"
	FsList      FsOpKind = "List"
	FsRead      FsOpKind = "Read"
	FsWrite     FsOpKind = "Write"
	FsMkdir     FsOpKind = "Mkdir"     // mkdir -p
	FsRemove    FsOpKind = "Remove"    // one file
	FsRemoveDir FsOpKind = "RemoveDir" // recursive
	FsCopy      FsOpKind = "Copy"      // one file
	FsRename    FsOpKind = "Rename"

	// msb extensions, offered by agents that advertise CapFsMeta.
	FsSymlink FsOpKind = "Symlink" // create symlink Dst pointing at Src
	FsSetAttr FsOpKind = "SetAttr" // chmod and set mtime, symlinks not followed
)

// FsOp is an fs operation. On the wire it is a serde externally tagged enum:
// {"Stat": {"path": "/x"}}, {"Copy": {"src": "/a", "dst": "/b"}},
// {"Write": {"path": "/x", "mode": 420}} (mode may be null).
type FsOp struct {
	Kind     FsOpKind
	Path     string  // Stat List Read Write Mkdir Remove RemoveDir
	Src, Dst string  // Copy Rename Symlink (Src is the link's target)
	Mode     *uint32 // Write SetAttr (optional)
	Modified *int64  // SetAttr (optional): mtime in unix seconds
}

type fsPathArgs struct {
	Path string `cbor:"path"`
}

type fsWriteArgs struct {
	Path string  `cbor:"path"`
	Mode *uint32 `cbor:"mode"`
}

type fsSetAttrArgs struct {
	Path     string  `cbor:"path"`
	Mode     *uint32 `cbor:"mode"`
	Modified *int64  `cbor:"modified"`
}

type fsPairArgs struct {
	Src string `cbor:"src"`
	Dst string `cbor:"dst"`
}

// MarshalCBOR encodes op as an externally tagged enum.
func (op FsOp) MarshalCBOR() ([]byte, error) {
	var args any
	switch op.Kind {
	case FsStat, FsList, FsRead, FsMkdir, FsRemove, FsRemoveDir:
		args = fsPathArgs{Path: op.Path}
	case FsWrite:
		args = fsWriteArgs{Path: op.Path, Mode: op.Mode}
	case FsSetAttr:
		args = fsSetAttrArgs{Path: op.Path, Mode: op.Mode, Modified: op.Modified}
	case FsCopy, FsRename, FsSymlink:
		args = fsPairArgs{Src: op.Src, Dst: op.Dst}
	default:
		return nil, fmt.Errorf("agentproto: unknown fs op %q", string(op.Kind))
	}
	return encMode.Marshal(map[string]any{string(op.Kind): args})
}

// UnmarshalCBOR decodes an externally tagged fs operation.
func (op *FsOp) UnmarshalCBOR(data []byte) error {
	tag, raw, err := decodeVariant(data)
	if err != nil {
		return fmt.Errorf("fs op: %w", err)
	}
	kind := FsOpKind(tag)
	var v FsOp
	switch kind {
	case FsStat, FsList, FsRead, FsMkdir, FsRemove, FsRemoveDir:
		var a fsPathArgs
		err = decMode.Unmarshal(raw, &a)
		v = FsOp{Kind: kind, Path: a.Path}
	case FsWrite:
		var a fsWriteArgs
		err = decMode.Unmarshal(raw, &a)
		v = FsOp{Kind: kind, Path: a.Path, Mode: a.Mode}
	case FsSetAttr:
		var a fsSetAttrArgs
		err = decMode.Unmarshal(raw, &a)
		v = FsOp{Kind: kind, Path: a.Path, Mode: a.Mode, Modified: a.Modified}
	case FsCopy, FsRename, FsSymlink:
		var a fsPairArgs
		err = decMode.Unmarshal(raw, &a)
		v = FsOp{Kind: kind, Src: a.Src, Dst: a.Dst}
	default:
		return fmt.Errorf("fs op: unknown variant %q", tag)
	}
	if err != nil {
		return fmt.Errorf("fs op %s: %w", tag, err)
	}
	*op = v
	return nil
}

// UnmarshalCBOR decodes a request and rejects one without an op, which
// serde requires.
func (r *FsRequest) UnmarshalCBOR(data []byte) error {
	type plain FsRequest // no methods: avoids recursion
	var v plain
	if err := decMode.Unmarshal(data, &v); err != nil {
		return err
	}
	if v.Op.Kind == "" {
		return errors.New("fs request: missing op")
	}
	*r = FsRequest(v)
	return nil
}

// FsResultData is the data of a successful Stat or List. Exactly one of
// Stat and List is meaningful: a non-nil Stat wins. On the wire it is
// {"Stat": FsEntry} or {"List": [FsEntry]}.
type FsResultData struct {
	Stat *FsEntry
	List []FsEntry
}

// MarshalCBOR encodes d as an externally tagged enum.
func (d FsResultData) MarshalCBOR() ([]byte, error) {
	if d.Stat != nil {
		return encMode.Marshal(map[string]any{"Stat": d.Stat})
	}
	return encMode.Marshal(map[string]any{"List": d.List})
}

// UnmarshalCBOR decodes an externally tagged fs result.
func (d *FsResultData) UnmarshalCBOR(data []byte) error {
	tag, raw, err := decodeVariant(data)
	if err != nil {
		return fmt.Errorf("fs result: %w", err)
	}
	switch tag {
	case "Stat":
		var e FsEntry
		if err := decMode.Unmarshal(raw, &e); err != nil {
			return fmt.Errorf("fs result Stat: %w", err)
		}
		*d = FsResultData{Stat: &e}
	case "List":
		var l []FsEntry
		if err := decMode.Unmarshal(raw, &l); err != nil {
			return fmt.Errorf("fs result List: %w", err)
		}
		*d = FsResultData{List: l}
	default:
		return fmt.Errorf("fs result: unknown variant %q", tag)
	}
	return nil
}

// decodeVariant splits a serde externally tagged enum value, a map with
// exactly one pair, into its tag and raw content.
func decodeVariant(data []byte) (string, cbor.RawMessage, error) {
	var m map[string]cbor.RawMessage
	if err := decMode.Unmarshal(data, &m); err != nil {
		return "", nil, err
	}
	if len(m) == 1 {
		for k, v := range m {
			return k, v, nil
		}
	}
	return "", nil, fmt.Errorf("enum: want a map with one variant, got %d pairs", len(m))
}
