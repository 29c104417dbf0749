package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/spf13/cobra"
)

// deleteCommand is `mirrord delete`.
func deleteCommand() *cobra.Command {
	var remote remoteFlags
	var arch string
	cmd := &cobra.Command{
		Use:   "delete DISTRO/REPO NAME",
		Short: "Remove a package from a hosted repo",
		Long: `Removes package NAME from a hosted repo of the mirrord at --url (from
every arch that lists it, or only from --arch); the repo's database is
rebuilt as after a publish.`,
		Example:           `  mirrord delete --url http://mirror.lan:8080 --token-file ci.token archlinux/custom hello`,
		Args:              checkArgs(cobra.ExactArgs(2)),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := remote.client(cmd)
			if err != nil {
				return err
			}
			distro, repo, err := splitRepo(cmd, args[0])
			if err != nil {
				return err
			}
			return c.delete(cmd.OutOrStdout(), distro, repo, arch, args[1])
		},
	}
	remote.register(cmd)
	cmd.Flags().StringVar(&arch, "arch", "", "only this arch (default: every arch of the repo)")
	return cmd
}

// delete removes package name from distro/repo, from arch or, if arch is
// "", from every arch of the repo that lists it.
func (c *publisher) delete(stdout io.Writer, distro, repo, arch, name string) error {
	ctx := context.Background()
	arches := []string{arch}
	if arch == "" {
		var err error
		if arches, err = c.arches(ctx, distro, repo); err != nil {
			return err
		}
	}
	deleted := 0
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
			fmt.Fprintf(stdout, "%s: deleted from %s/%s/%s\n", name, distro, repo, a)
			deleted++
		case arch == "" && errors.As(err, &ae) && ae.code == http.StatusNotFound:
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
