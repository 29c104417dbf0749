package sync

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/alpm"
	"github.com/mirrord/mirrord/internal/faultserver"
)

// addIncompressible puts an uncompressed package of size random bytes in
// the repo, so that the transfer is as large as the payload.
func (u *upRepo) addIncompressible(name string, size int) {
	u.t.Helper()
	payload := make([]byte, size)
	rand.Read(payload)
	pi := &alpm.PKGINFO{Package: alpm.Package{Name: name, Base: name, Version: "1-1", Arch: "x86_64", BuildDate: 1795824270, ISize: int64(size)}}
	path := filepath.Join(u.root, u.dir, name+"-1-1-x86_64.pkg.tar")
	f, err := os.Create(path)
	if err != nil {
		u.t.Fatal(err)
	}
	if err := alpm.WritePackage(f, pi, []alpm.PackageFile{{Name: "usr/share/" + name, Body: payload}}, alpm.None); err != nil {
		u.t.Fatal(err)
	}
	f.Close()
	p, err := alpm.ReadPackageFile(path, alpm.ReadOptions{ListFiles: true})
	if err != nil {
		u.t.Fatal(err)
	}
	u.pkgs[name] = p
}

// sync.max_bandwidth caps all of a sync's transfers together: 100 MiB at
// 20 MiB/s takes 5 s (within 20 %), where the same sync uncapped takes
// what the machine needs.
func TestMaxBandwidth(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 200 MiB")
	}
	root := t.TempDir()
	u := newUpRepo(t, root, archDir, "core")
	for i := range 10 {
		u.addIncompressible(fmt.Sprintf("big%d", i), 10<<20)
	}
	u.write()
	setLastupdate(t, root, 1000)
	up := faultserver.NewTest(t, root)

	timed := func(bw config.ByteSize) time.Duration {
		cfg := archConfig(t, up)
		cfg.Sync.Concurrency, cfg.Sync.MaxBandwidth = 4, bw
		e := newEnv(t, cfg)
		start := time.Now()
		mustSync(t, e)
		d := time.Since(start)
		if n := len(listFiles(t, filepath.Join(e.tree(), "archlinux", archDir), nil)); n < 10 {
			t.Fatalf("%d files synced, want the 10 packages and the dbs", n)
		}
		return d
	}
	free := timed(0)
	capped := timed(20 << 20)
	t.Logf("100 MiB: uncapped %v, at 20 MiB/s %v", free.Round(time.Millisecond), capped.Round(time.Millisecond))
	// The budget allows 100 MiB in 5 s less its 2 MiB burst (4.9 s); what
	// the sync spends besides (dbs, hashing, writes) is at most the
	// uncapped time, and its own pacing at most 20 % over.
	if capped < 4500*time.Millisecond {
		t.Errorf("capped sync took %v, want at least 4.5 s (the cap does not hold)", capped)
	}
	if limit := 7*time.Second + free; capped > limit {
		t.Errorf("capped sync took %v, want at most 7 s past the uncapped %v", capped, free)
	}
}
