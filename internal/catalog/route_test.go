package catalog

import (
	"strings"
	"testing"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/alpm"
)

func testConfig() *config.Config {
	return &config.Config{
		Distros: map[string]config.Distro{
			"archlinux": {Layout: "$repo/os/$arch", Arch: []string{"x86_64"},
				Repos: map[string]config.Repo{"core": {Mode: config.ModeProxy}, "custom": {Mode: config.ModeHosted}}},
			"alarm": {Layout: "$arch/$repo", Arch: []string{"aarch64"},
				Repos: map[string]config.Repo{"core": {Mode: config.ModeProxy}}},
		},
	}
}

func TestResolve(t *testing.T) {
	r := newRouter(testConfig())
	tests := []struct {
		path    string
		want    Target
		wantErr bool
	}{
		{path: "/archlinux/core/os/x86_64/core.db", want: Target{Distro: "archlinux", Repo: "core", Arch: "x86_64", File: "core.db", Mode: config.ModeProxy, Rel: "archlinux/core/os/x86_64/core.db"}},
		{path: "/alarm/aarch64/core/core.db", want: Target{Distro: "alarm", Repo: "core", Arch: "aarch64", File: "core.db", Mode: config.ModeProxy, Rel: "alarm/aarch64/core/core.db"}},
		{path: "/archlinux/custom/os/x86_64/a-1:2.0-1-any.pkg.tar.zst", want: Target{Distro: "archlinux", Repo: "custom", Arch: "x86_64", File: "a-1:2.0-1-any.pkg.tar.zst", Mode: config.ModeHosted, Rel: "archlinux/custom/os/x86_64/a-1:2.0-1-any.pkg.tar.zst"}},
		{path: "/archlinux/lastupdate", want: Target{Distro: "archlinux", File: "lastupdate", Mode: config.ModeProxy, Rel: "archlinux/lastupdate"}},
		{path: "/archlinux/core.db", wantErr: true},
		{path: "/alarm/core/aarch64/core.db", wantErr: true}, // the ARM layout is $arch/$repo
		{path: "/archlinux/core/os/aarch64/core.db", wantErr: true},
		{path: "/archlinux/core/os/x86_64/", wantErr: true},
		{path: "/archlinux", wantErr: true},
	}
	for _, tt := range tests {
		got, err := r.Resolve(tt.path)
		if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
			t.Errorf("Resolve(%q) = %+v, %v; want %+v, err %v", tt.path, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestIsMutable(t *testing.T) {
	tests := []struct {
		file string
		want bool
	}{
		{"core.db", true}, {"core.db.sig", true}, {"core.files", true}, {"core.files.sig", true},
		{"core.db.tar.gz", true}, {"core.files.tar.zst.sig", true}, {"lastupdate", true}, {"lastsync", true},
		{"bash-5.2-1-x86_64.pkg.tar.zst", false}, {"bash-5.2-1-x86_64.pkg.tar.zst.sig", false},
		{"coreutils-9-1-x86_64.pkg.tar.xz", false},
	}
	for _, tt := range tests {
		if got := IsMutable("core", tt.file); got != tt.want {
			t.Errorf("IsMutable(core, %q) = %v, want %v", tt.file, got, tt.want)
		}
	}
}

// FuzzParseFileName: the file-name parser never panics, a name it accepts
// is built back exactly, and the router accepts every such name made of
// the characters URLs carry. (makepkg allows any printable character in a
// pkgver; the fuzzer found "A-!0-0-0.pkg.tar", which the router refuses,
// so hosted publishing now refuses such names: internal/hosted unservable.)
func FuzzParseFileName(f *testing.F) {
	for _, s := range []string{"hello-1:2.0-1-x86_64.pkg.tar.zst", "a-b-c-1-1-any.pkg.tar", "x-1-1-any.pkg.tar.xz.sig", "-1-1-any.pkg.tar.zst"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fn, err := alpm.ParseFileName(s)
		if err != nil {
			return
		}
		if fn.String() != s {
			t.Fatalf("ParseFileName(%q).String() = %q", s, fn.String())
		}
		if len(s) <= 255 && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-+@:~") == "" && !validFile(s) {
			t.Fatalf("ParseFileName(%q) accepts a name the router refuses", s)
		}
	})
}
