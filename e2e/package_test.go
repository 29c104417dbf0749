package e2e

import (
	"bytes"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// asBuilder runs cmd as nobody when the test runs as root: makepkg
// refuses root, and a package is built as an ordinary user anyway.
func asBuilder(t *testing.T, cmd *exec.Cmd, owned string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("makepkg refuses root, and there is no user nobody: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	err = filepath.WalkDir(owned, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
}

// srcinfo parses `makepkg --printsrcinfo`: every key with its values.
func srcinfo(out string) map[string][]string {
	m := map[string][]string{}
	for line := range strings.Lines(out) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), " = "); ok {
			m[k] = append(m[k], v)
		}
	}
	return m
}

// copyTree copies the repository's files (tracked, and new ones git does
// not ignore: what a release tarball of this checkout holds) to dst.
func copyTree(t *testing.T, dst string) {
	t.Helper()
	out, err := exec.Command("git", "-C", "..", "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		src := filepath.Join("..", name)
		info, err := os.Lstat(src)
		if err != nil {
			continue // deleted in the work tree, not yet in the index
		}
		if !info.Mode().IsRegular() {
			continue
		}
		copyFile(t, src, filepath.Join(dst, name), info.Mode().Perm())
	}
}

func copyFile(t *testing.T, src, dst string, mode fs.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestArchPackage runs packaging/archlinux/PKGBUILD with the real
// makepkg: --printsrcinfo for what it declares, then --repackage, which
// runs package() under fakeroot and writes the package, over a source
// tree like the release tarball's with this test's binary as build()'s
// output (compiling and downloading are left out). The package, as pacman
// lists it, holds every file `make install DESTDIR=...` installs, the
// config mirrord.service reads and every backup file, and its binary runs.
func TestArchPackage(t *testing.T) {
	requireTool(t, "makepkg", "fakeroot", "bsdtar", "pacman", "make")
	// Not t.TempDir: nobody must reach it, and its parents are 0700.
	dir, err := os.MkdirTemp("", "mirrord-makepkg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, f := range []string{"PKGBUILD", "mirrord.install"} {
		copyFile(t, filepath.Join("../packaging/archlinux", f), filepath.Join(dir, f), 0o644)
	}
	makepkg := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("makepkg", args...)
		cmd.Dir = dir
		// The build dir, the package and the sources here, whatever the
		// machine's makepkg.conf says.
		cmd.Env = append(os.Environ(), "HOME="+dir, "BUILDDIR="+dir, "PKGDEST="+dir, "SRCDEST="+dir)
		asBuilder(t, cmd, dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("makepkg %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	info := srcinfo(makepkg("--printsrcinfo"))
	one := func(key string) string {
		if len(info[key]) != 1 {
			t.Fatalf(".SRCINFO %s = %q, want one value", key, info[key])
		}
		return info[key][0]
	}
	name, ver := one("pkgname"), one("pkgver")
	if name != "mirrord" || one("install") != "mirrord.install" {
		t.Errorf(".SRCINFO pkgname %q, install %q", name, info["install"])
	}
	wantSource := name + "-" + ver + ".tar.gz::https://github.com/mirrord/mirrord/archive/v" + ver + ".tar.gz"
	if !slices.Equal(info["source"], []string{wantSource}) || len(info["sha256sums"]) != 1 {
		t.Errorf(".SRCINFO source %q with sha256sums %q, want the release tarball %s and its sum", info["source"], info["sha256sums"], wantSource)
	}
	for _, k := range []string{"arch", "makedepends", "backup", "license", "pkgdesc", "url"} {
		if len(info[k]) == 0 {
			t.Errorf(".SRCINFO has no %s", k)
		}
	}
	if !slices.Contains(info["makedepends"], "go") {
		t.Errorf(".SRCINFO makedepends %q lack go", info["makedepends"])
	}

	// What build() leaves: the source tree with bin/mirrord.
	src := filepath.Join(dir, "src", name+"-"+ver)
	copyTree(t, src)
	copyFile(t, binary, filepath.Join(src, "bin/mirrord"), 0o755)
	// `make install` as the Makefile documents it, before makepkg runs
	// (and owns the tree).
	destdir := t.TempDir()
	if out, err := exec.Command("make", "-C", src, "install", "DESTDIR="+destdir, "PREFIX=/usr").CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	var installed []string
	filepath.WalkDir(destdir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			installed = append(installed, strings.TrimPrefix(p, destdir+"/"))
		}
		return err
	})

	makepkg("--repackage", "--nodeps", "--noconfirm")
	pkgs, _ := filepath.Glob(filepath.Join(dir, name+"-"+ver+"-*.pkg.tar*"))
	if len(pkgs) != 1 {
		t.Fatalf("makepkg made %q, want one package", pkgs)
	}
	out, err := exec.Command("pacman", "-Qlpq", pkgs[0]).Output()
	if err != nil {
		t.Fatalf("pacman -Qlp %s: %v", pkgs[0], err)
	}
	inPackage := map[string]bool{}
	for line := range strings.Lines(string(out)) {
		inPackage[strings.TrimPrefix(strings.TrimSpace(line), "/")] = true
	}
	configPath := strings.TrimPrefix(unitConfigPath(t), "/")
	want := append(slices.Clone(installed), info["backup"]...)
	want = append(want, configPath)
	for _, f := range []string{"usr/bin/mirrord", "usr/lib/systemd/system/mirrord.service", "usr/lib/sysusers.d/mirrord.conf", "usr/lib/tmpfiles.d/mirrord.conf"} {
		if !slices.Contains(installed, f) {
			t.Errorf("make install does not install %s", f)
		}
	}
	var missing []string
	for _, f := range want {
		if !inPackage[f] {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		t.Errorf("the package lacks %q; pacman -Qlp lists:\n%s", missing, out)
	}

	// The package as pacman installs it: its .PKGINFO names the backup
	// file; the config is the example; the binary runs.
	pkginfo, err := exec.Command("bsdtar", "-xOf", pkgs[0], ".PKGINFO").Output()
	if err != nil || !bytes.Contains(pkginfo, []byte("\nbackup = "+configPath+"\n")) {
		t.Errorf(".PKGINFO (%v) has no backup = %s:\n%s", err, configPath, pkginfo)
	}
	root := t.TempDir()
	if out, err := exec.Command("bsdtar", "-xf", pkgs[0], "-C", root).CombinedOutput(); err != nil {
		t.Fatalf("bsdtar -x: %v\n%s", err, out)
	}
	example, _ := os.ReadFile("../config/mirrord.example.yaml")
	if got, _ := os.ReadFile(filepath.Join(root, configPath)); !bytes.Equal(got, example) {
		t.Errorf("the package's %s is not config/mirrord.example.yaml", configPath)
	}
	if out, err := exec.Command(filepath.Join(root, "usr/bin/mirrord"), "version").CombinedOutput(); err != nil {
		t.Errorf("the package's mirrord version: %v\n%s", err, out)
	}
}

// unitConfigPath is the config file mirrord.service's ExecStart names.
func unitConfigPath(t *testing.T) string {
	t.Helper()
	unit := unitFile(t, "../systemd/mirrord.service")
	f := strings.Fields(strings.Join(unit["ExecStart"], " "))
	if i := slices.Index(f, "--config"); i >= 0 && i+1 < len(f) {
		return f[i+1]
	}
	t.Fatalf("mirrord.service: ExecStart %q names no --config", unit["ExecStart"])
	return ""
}
