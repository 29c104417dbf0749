package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

const deleteUsage = `usage: mirrord delete --url URL [--token T | --token-file F] [--arch A] DISTRO/REPO NAME
  Removes package NAME from a hosted repo of the mirrord at URL (from
  every arch that lists it, or only from --arch); the repo's database is
  rebuilt as after a publish.`

// deleteCommand is `mirrord delete`.
func deleteCommand(args []string) error {
	fs := pflag.NewFlagSet("delete", pflag.ContinueOnError)
	fs.Usage = func() { fmt.Fprintln(os.Stderr, deleteUsage) }
	base := fs.String("url", os.Getenv("MIRRORD_URL"), "base URL of the mirrord, e.g. http://mirror.lan:8080")
	token, tokenFile := tokenFlags(fs)
	arch := fs.String("arch", "", "only this arch (default: every arch of the repo)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *base == "" || fs.NArg() != 2 {
		return errors.New(deleteUsage)
	}
	distro, repo, ok := strings.Cut(fs.Arg(0), "/")
	if !ok || distro == "" || repo == "" || strings.Contains(repo, "/") {
		return fmt.Errorf("%q is not DISTRO/REPO\n%s", fs.Arg(0), deleteUsage)
	}
	tok, err := clientToken(*token, *tokenFile)
	if err != nil {
		return err
	}
	c := &publisher{base: strings.TrimSuffix(*base, "/"), token: tok, client: &http.Client{Timeout: time.Minute}}
	ctx := context.Background()
	arches := []string{*arch}
	if *arch == "" {
		if arches, err = c.arches(ctx, distro, repo); err != nil {
			return err
		}
	}
	name, deleted := fs.Arg(1), 0
	for _, a := range arches {
		target := fmt.Sprintf("%s/api/v1/repos/%s/%s/%s/packages/%s", c.base, url.PathEscape(distro), url.PathEscape(repo), url.PathEscape(a), url.PathEscape(name))
		req, err := http.NewRequestWithContext(ctx, http.MethodDelete, target, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+c.token)
		var out map[string]string
		var ae *apiError
		err = c.do(req, http.StatusOK, &out)
		switch {
		case err == nil:
			fmt.Printf("%s: deleted from %s/%s/%s\n", name, distro, repo, a)
			deleted++
		case *arch == "" && errors.As(err, &ae) && ae.code == http.StatusNotFound:
			// not in this arch
		default:
			return fmt.Errorf("delete %s from %s/%s/%s: %w", name, distro, repo, a, err)
		}
	}
	if deleted == 0 {
		return fmt.Errorf("%s is in no arch of %s/%s", name, distro, repo)
	}
	return nil
}

// arches lists the arches of distro/repo from GET /api/v1/repos.
func (c *publisher) arches(ctx context.Context, distro, repo string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/api/v1/repos", nil)
	if err != nil {
		return nil, err
	}
	var out struct {
		Distros []struct {
			Name  string `json:"name"`
			Repos []struct {
				Name   string `json:"name"`
				Arches []struct {
					Arch string `json:"arch"`
				} `json:"arches"`
			} `json:"repos"`
		} `json:"distros"`
	}
	if err := c.do(req, http.StatusOK, &out); err != nil {
		return nil, err
	}
	for _, d := range out.Distros {
		for _, r := range d.Repos {
			if d.Name == distro && r.Name == repo {
				var arches []string
				for _, a := range r.Arches {
					arches = append(arches, a.Arch)
				}
				return arches, nil
			}
		}
	}
	return nil, fmt.Errorf("%s/%s: no such repo at %s", distro, repo, c.base)
}
