package msb_test

import (
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const rootPath = "github.com/msb-go/msb"

// TestAPINamesNoInternalType keeps internal packages out of the SDK's
// exported API: every exported identifier's signature (and, transitively,
// the exported fields and methods of the root-package types it names) may
// name only the standard library and package msb itself. A type from
// internal/... there is one callers cannot import, and it turns every change
// to that package into an API change.
func TestAPINamesNoInternalType(t *testing.T) {
	pkg := typeCheckRoot(t)
	w := apiWalker{t: t, seen: map[*types.TypeName]bool{}}
	scope := pkg.Scope()
	for _, name := range scope.Names() {
		obj := scope.Lookup(name)
		if !obj.Exported() {
			continue
		}
		if tn, ok := obj.(*types.TypeName); ok && !tn.IsAlias() {
			w.named(name, tn)
			continue
		}
		w.walk(name, obj.Type())
	}
}

// typeCheckRoot type-checks the root package's non-test files for the
// current GOOS, importing dependencies from the export data `go list
// -export` leaves in the build cache.
func typeCheckRoot(t *testing.T) *types.Package {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-export",
		"-f", "{{.ImportPath}}\t{{.Export}}\t{{.Dir}}\t{{join .GoFiles \",\"}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -export: %v", err)
	}
	exports := map[string]string{}
	var files []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 4 {
			t.Fatalf("go list: unexpected line %q", line)
		}
		exports[f[0]] = f[1]
		if f[0] == rootPath {
			for _, name := range strings.Split(f[3], ",") {
				files = append(files, filepath.Join(f[2], name))
			}
		}
	}
	if len(files) == 0 {
		t.Fatalf("go list: no files for %s", rootPath)
	}

	fset := token.NewFileSet()
	var parsed []*ast.File
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		parsed = append(parsed, f)
	}
	conf := types.Config{Importer: importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		file, ok := exports[path]
		if !ok || file == "" {
			return nil, os.ErrNotExist
		}
		return os.Open(file)
	})}
	pkg, err := conf.Check(rootPath, fset, parsed, nil)
	if err != nil {
		t.Fatalf("type-check %s: %v", rootPath, err)
	}
	return pkg
}

// apiWalker visits the types an exported identifier shows to callers.
type apiWalker struct {
	t    *testing.T
	seen map[*types.TypeName]bool
}

// named checks a root-package type once: its definition's exported parts and
// its exported methods (on T and *T).
func (w *apiWalker) named(ident string, tn *types.TypeName) {
	if w.seen[tn] {
		return
	}
	w.seen[tn] = true
	n, ok := tn.Type().(*types.Named)
	if !ok {
		return
	}
	if tps := n.TypeParams(); tps != nil {
		for i := range tps.Len() {
			w.walk(ident, tps.At(i).Constraint())
		}
	}
	w.walk(ident, n.Underlying())
	for i := range n.NumMethods() {
		if m := n.Method(i); m.Exported() {
			w.walk(tn.Name()+"."+m.Name(), m.Type())
		}
	}
}

// walk reports every named type in typ whose package is neither the root
// package nor in the standard library.
func (w *apiWalker) walk(ident string, typ types.Type) {
	switch typ := typ.(type) {
	case *types.Basic, nil:
	case *types.Alias:
		w.walk(ident, types.Unalias(typ))
	case *types.Named:
		tn := typ.Obj()
		switch p := tn.Pkg(); {
		case p == nil: // error, comparable
		case p.Path() == rootPath:
			w.named(tn.Name(), tn)
		case !isStd(p.Path()):
			w.t.Errorf("%s names %s.%s, which SDK users cannot import; use a type of package msb or the standard library",
				ident, p.Path(), tn.Name())
		}
		if args := typ.TypeArgs(); args != nil {
			for i := range args.Len() {
				w.walk(ident, args.At(i))
			}
		}
	case *types.Pointer:
		w.walk(ident, typ.Elem())
	case *types.Slice:
		w.walk(ident, typ.Elem())
	case *types.Array:
		w.walk(ident, typ.Elem())
	case *types.Chan:
		w.walk(ident, typ.Elem())
	case *types.Map:
		w.walk(ident, typ.Key())
		w.walk(ident, typ.Elem())
	case *types.Signature:
		if tps := typ.TypeParams(); tps != nil {
			for i := range tps.Len() {
				w.walk(ident, tps.At(i).Constraint())
			}
		}
		for _, tup := range []*types.Tuple{typ.Params(), typ.Results()} {
			for v := range tup.Variables() {
				w.walk(ident, v.Type())
			}
		}
	case *types.Struct:
		for f := range typ.Fields() {
			if f.Exported() || f.Embedded() {
				w.walk(ident+"."+f.Name(), f.Type())
			}
		}
	case *types.Interface:
		for i := range typ.NumEmbeddeds() {
			w.walk(ident, typ.EmbeddedType(i))
		}
		for i := range typ.NumExplicitMethods() {
			m := typ.ExplicitMethod(i)
			w.walk(ident+"."+m.Name(), m.Type())
		}
	case *types.Union:
		for i := range typ.Len() {
			w.walk(ident, typ.Term(i).Type())
		}
	case *types.TypeParam:
		w.walk(ident, typ.Constraint())
	default:
		w.t.Errorf("%s: unhandled type %T (%v)", ident, typ, typ)
	}
}
