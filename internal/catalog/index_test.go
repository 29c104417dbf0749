package catalog

import (
	"bytes"
	"testing"
	"time"

	"github.com/mirrord/mirrord/internal/alpm"
	"github.com/mirrord/mirrord/internal/store"
)

const coreDir = "archlinux/core/os/x86_64"

func writeDB(t *testing.T, st *store.Store, mod time.Time, pkgs ...*alpm.Package) {
	t.Helper()
	var b bytes.Buffer
	if err := alpm.WriteDB(&b, pkgs, alpm.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := st.WriteFile(coreDir+"/core.db", b.Bytes(), store.Meta{LastModified: mod}); err != nil {
		t.Fatal(err)
	}
}

func pkg(name, version string, size int64, sum string) *alpm.Package {
	return &alpm.Package{Filename: name + "-" + version + "-x86_64.pkg.tar.zst", Name: name, Version: version,
		Arch: "x86_64", CSize: size, SHA256Sum: sum}
}

// The catalog answers from the db in the tree, parsed once per version:
// a db replaced behind its back is read again, one a sync is about to
// publish answers first while it is announced, and only package files
// are looked up.
func TestExpect(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cat, err := New(testConfig(), st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := pkg("a", "1.0-1", 10, "aa")
	rel := coreDir + "/" + a.Filename
	if _, ok := cat.Expect(rel); ok {
		t.Fatal("Expect before any db = ok")
	}
	writeDB(t, st, time.Unix(1000, 0), a)
	if e, ok := cat.Expect(rel); !ok || e != (Expect{Size: 10, SHA256: "aa"}) {
		t.Fatalf("Expect = %+v, %v; want the db's", e, ok)
	}
	first, err := cat.DB(coreDir + "/core.db")
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := cat.DB(coreDir + "/core.db"); again != first {
		t.Error("an unchanged db was parsed again")
	}
	if !cat.Pinned(rel) || cat.Pinned(coreDir+"/b-1.0-1-x86_64.pkg.tar.zst") {
		t.Error("Pinned does not follow the db")
	}

	// A new version of the db, written behind the catalog's back.
	b := pkg("b", "2.0-1", 20, "bb")
	writeDB(t, st, time.Unix(2000, 0), b)
	if _, ok := cat.Expect(rel); ok {
		t.Error("Expect still answers from the replaced db")
	}
	if e, ok := cat.Expect(coreDir + "/" + b.Filename); !ok || e.Size != 20 {
		t.Errorf("Expect of the new db's package = %+v, %v", e, ok)
	}

	// A sync announces its next db.
	release := cat.Expecting(coreDir, map[string]Expect{a.Filename: {Size: 11, SHA256: "a2"}})
	if e, ok := cat.Expect(rel); !ok || e != (Expect{Size: 11, SHA256: "a2"}) {
		t.Errorf("Expect while announced = %+v, %v; want the announced db's", e, ok)
	}
	release()
	if _, ok := cat.Expect(rel); ok {
		t.Error("Expect answers from an announcement after its release")
	}
	if _, ok := cat.Expect(coreDir + "/" + b.Filename + ".sig"); ok {
		t.Error("Expect answers for a signature")
	}
}

// DBChanged wakes its waiters when a repo's {repo}.db is committed, and
// only then: packages, signatures and the .db.tar.gz target do not.
func TestDBChanged(t *testing.T) {
	cat, err := New(testConfig(), nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ch := cat.DBChanged()
	for _, rel := range []string{coreDir + "/a-1.0-1-x86_64.pkg.tar.zst", coreDir + "/core.db.sig",
		coreDir + "/core.db.tar.gz", coreDir + "/core.files", "archlinux/nope/os/x86_64/nope.db"} {
		cat.Committed(rel)
		select {
		case <-ch:
			t.Fatalf("DBChanged closed by Committed(%q)", rel)
		default:
		}
	}
	cat.Committed(coreDir + "/core.db")
	select {
	case <-ch:
	default:
		t.Fatal("DBChanged not closed by Committed of core.db")
	}
	next := cat.DBChanged()
	select {
	case <-next:
		t.Fatal("the next DBChanged is closed already")
	default:
	}
	cat.Committed(coreDir + "/core.db")
	<-next
}
