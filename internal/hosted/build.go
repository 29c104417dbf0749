package hosted

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"github.com/mirrord/mirrord/internal/alpm"
	"github.com/mirrord/mirrord/internal/pgp"
	"github.com/mirrord/mirrord/internal/store"
)

// build writes {repo}.files.tar.gz then {repo}.db.tar.gz of one arch from
// pkgs (so that a db never names a package its files db lacks), each
// atomically and, with a signer, each just after its .sig, and points the
// {repo}.db and {repo}.files links (and their .sig) at them.
func (s *Service) build(key, dir, repo string, signer *pgp.Signer, pkgs []*alpm.Package) error {
	start := time.Now()
	lm := s.dbTime(path.Join(dir, repo+".db.tar.gz"), start)
	for _, files := range []bool{true, false} {
		link := repo + ".db"
		if files {
			link = repo + ".files"
		}
		name := link + ".tar.gz"
		if err := s.writeDB(path.Join(dir, name), signer, pkgs, alpm.WriteOptions{Files: files, ModTime: lm}); err != nil {
			return err
		}
		if err := s.linkSig(signer, dir, link, name); err != nil {
			return err
		}
		if info, err := s.store.Lstat(path.Join(dir, link)); err != nil || info.Mode()&fs.ModeSymlink == 0 {
			if err := s.store.Symlink(name, path.Join(dir, link)); err != nil {
				return err
			}
		}
		s.cat.Committed(path.Join(dir, link))
	}
	if s.bucket != nil {
		// The db is in place here, and served from here; the other
		// nodes' copies lag until the share is done.
		if err := s.shareDB(dir, repo); err != nil {
			s.log.Warn("share the database with the other nodes", "repo", key, "folder", dir, "err", err)
		}
	}
	d := time.Since(start)
	s.metrics.rebuilds.WithLabelValues(key).Inc()
	s.metrics.rebuildSeconds.WithLabelValues(key).Observe(d.Seconds())
	s.log.Debug("built database", "repo", key, "file", path.Join(dir, repo+".db"), "packages", len(pkgs), "duration_seconds", d.Seconds())
	return nil
}

// dbTime is the Last-Modified of a new db: now to the second, but always
// after the previous one, since pacman's If-Modified-Since has 1-second
// resolution and two builds in one second must not look unchanged.
func (s *Service) dbTime(rel string, now time.Time) time.Time {
	t := now.Truncate(time.Second)
	if prev, err := s.store.Stat(rel); err == nil && !t.After(prev.LastModified) {
		t = prev.LastModified.Truncate(time.Second).Add(time.Second)
	}
	return t
}

func (s *Service) writeDB(rel string, signer *pgp.Signer, pkgs []*alpm.Package, opts alpm.WriteOptions) error {
	f, err := s.store.CreateTemp("db-*")
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(f, h), 256<<10)
	err = alpm.WriteDB(bw, pkgs, opts)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = s.writeSig(signer, f, rel)
	}
	if err == nil {
		err = s.store.Commit(f, rel, store.Meta{SHA256: hex.EncodeToString(h.Sum(nil)), LastModified: opts.ModTime})
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", rel, err)
	}
	return nil
}

// Delete removes a package from a hosted repo's arch; the db is rebuilt
// like after a publish, and the file removed after hosted.retention.
func (s *Service) Delete(ctx context.Context, distro, repo, arch, name string) error {
	r, err := s.repoOf(distro, repo)
	if err != nil {
		return err
	}
	if strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("package %q: %w", name, ErrNotFound)
	}
	return r.do(ctx, &deleteReq{arch: arch, name: name, reply: make(chan error, 1)})
}
