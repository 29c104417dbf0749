package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// publishCommand is `mirrord publish`.
func publishCommand() *cobra.Command {
	var remote remoteFlags
	var wait, force bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "publish DISTRO/REPO FILE.pkg.tar.zst...",
		Short: "Upload packages to a hosted repo",
		Long: `Uploads packages (and FILE.sig when present) to a hosted repo of the
mirrord at --url. With --wait, returns once every package is in the
database that mirrord serves (so a pacman -Sy right after sees it), and
exits non-zero if a job failed or --timeout passed first.`,
		Example: `  mirrord publish --url http://mirror.lan:8080 --token-file ci.token --wait archlinux/custom hello-1.0-1-x86_64.pkg.tar.zst`,
		Args:    checkArgs(cobra.MinimumNArgs(2)),
		ValidArgsFunction: func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			if len(args) == 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp // DISTRO/REPO: the server knows them
			}
			return []string{"pkg.tar.zst", "pkg.tar.xz", "pkg.tar.gz"}, cobra.ShellCompDirectiveFilterFileExt
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := remote.client(cmd)
			if err != nil {
				return err
			}
			distro, repo, err := splitRepo(cmd, args[0])
			if err != nil {
				return err
			}
			c.force = force
			return c.publish(cmd.OutOrStdout(), cmd.ErrOrStderr(), distro, repo, args[1:], wait, timeout)
		},
	}
	remote.register(cmd)
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until every package is in the served database; fail if a job fails")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "with --wait, fail if the packages are not served after this long (0: wait as long as it takes)")
	cmd.Flags().BoolVar(&force, "force", false, "publish even if the repo holds the same or a newer version")
	return cmd
}

// publish uploads files to distro/repo and, with wait, waits until each is
// in the served database, for at most timeout (0: no limit).
func (c *publisher) publish(stdout, stderr io.Writer, distro, repo string, files []string, wait bool, timeout time.Duration) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c.terminal = isTerminal(os.Stderr)
	type queued struct{ file, job string }
	var jobs []queued
	var failed int
	for _, file := range files {
		id, err := c.upload(ctx, distro, repo, file)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fmt.Fprintf(stderr, "%s: %v\n", file, err)
			failed++
			continue
		}
		fmt.Fprintf(stdout, "%s: queued as job %s\n", filepath.Base(file), id)
		jobs = append(jobs, queued{file, id})
	}
	if wait {
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		for _, q := range jobs {
			j, err := c.wait(ctx, q.job)
			switch {
			case errors.Is(err, context.DeadlineExceeded):
				// The last long poll was cut: ask once more, to say where the job is.
				qctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				if now, err := c.job(qctx, q.job, ""); err == nil {
					j = now
				}
				cancel()
				fmt.Fprintf(stderr, "%s: job %s: %s after --timeout %v\n", filepath.Base(q.file), q.job, j.state(), timeout)
				failed++
			case err != nil:
				fmt.Fprintf(stderr, "%s: job %s: %v\n", filepath.Base(q.file), q.job, err)
				failed++
			case j.Status != "done":
				fmt.Fprintf(stderr, "%s: job %s failed: %s\n", filepath.Base(q.file), q.job, j.Error)
				failed++
			default:
				fmt.Fprintf(stdout, "%s: published %s\n", filepath.Base(q.file), j.Package.Filename)
			}
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d packages not published", failed, len(files))
	}
	return nil
}

type publisher struct {
	base, token string
	force       bool
	client      *http.Client
	terminal    bool
}

// apiJob is the part of a job answer that publish reads.
type apiJob struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Error   string `json:"error"`
	Package struct {
		Filename string `json:"filename"`
	} `json:"package"`
	PublishedAt *time.Time `json:"published_at"` // nil until a served db lists the package
}

// state says where a job that is not over yet is, for a timeout's message.
func (j apiJob) state() string {
	switch {
	case j.Status == "":
		return "no answer"
	case j.Status == "done":
		return "done, not yet in the served database"
	}
	return j.Status
}

// upload sends one package, as multipart when a signature lies next to
// it, streaming from disk either way, and returns the job id.
func (c *publisher) upload(ctx context.Context, distro, repo, file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return "", err
	}
	name := filepath.Base(file)
	prog := &uploadProgress{r: f, name: name, total: info.Size(), terminal: c.terminal}
	defer prog.done()
	q := url.Values{"filename": {name}}
	if c.force {
		q.Set("force", "true")
	}
	target := fmt.Sprintf("%s/api/v1/repos/%s/%s/packages?%s", c.base, url.PathEscape(distro), url.PathEscape(repo), q.Encode())

	var body io.Reader = prog
	contentType := "application/octet-stream"
	sig, err := os.ReadFile(file + ".sig")
	if err == nil {
		pr, pw := io.Pipe()
		mw := multipart.NewWriter(pw)
		contentType = mw.FormDataContentType()
		body = pr
		go func() {
			pw.CloseWithError(writeParts(mw, name, prog, sig))
		}()
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, body)
	if err != nil {
		return "", err
	}
	if body == prog {
		req.ContentLength = info.Size()
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+c.token)
	var out struct {
		Job string `json:"job"`
	}
	if err := c.do(req, http.StatusAccepted, &out); err != nil {
		return "", err
	}
	return out.Job, nil
}

func writeParts(mw *multipart.Writer, name string, pkg io.Reader, sig []byte) error {
	w, err := mw.CreateFormFile("package", name)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, pkg); err != nil {
		return err
	}
	if w, err = mw.CreateFormFile("signature", name+".sig"); err != nil {
		return err
	}
	if _, err := w.Write(sig); err != nil {
		return err
	}
	return mw.Close()
}

// wait long-polls the job until it failed or its package is in the
// served database (published_at set), or ctx ends; it returns the job as
// last seen either way.
func (c *publisher) wait(ctx context.Context, id string) (apiJob, error) {
	var j apiJob
	for {
		next, err := c.job(ctx, id, "50s")
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return j, err
		}
		j = next
		if j.Status == "failed" || (j.Status == "done" && j.PublishedAt != nil) {
			return j, nil
		}
	}
}

// job reads the job; with wait ("50s"), the API holds the answer until
// the job is settled or that time passed.
func (c *publisher) job(ctx context.Context, id, wait string) (apiJob, error) {
	target := c.base + "/api/v1/jobs/" + url.PathEscape(id)
	if wait != "" {
		target += "?wait=" + wait
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return apiJob{}, err
	}
	var j apiJob
	return j, c.do(req, http.StatusOK, &j)
}

// do sends req and decodes a JSON answer of status want, or turns the
// API's {"error": ...} into an error.
func (c *publisher) do(req *http.Request, want int, out any) error {
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode != want {
		var e struct {
			Error string `json:"error"`
		}
		msg := resp.Status
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			msg += ": " + e.Error
		}
		return &apiError{code: resp.StatusCode, msg: msg}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	return nil
}

// apiError is an answer of another status than the one asked for; its
// text is the status and the API's {"error"} message.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return e.msg }

// uploadProgress counts bytes read and, on a terminal, redraws one status line
// at most ten times a second.
type uploadProgress struct {
	r        io.Reader
	name     string
	total    int64
	terminal bool
	n        atomic.Int64
	last     time.Time
}

func (p *uploadProgress) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n.Add(int64(n))
	if p.terminal && time.Since(p.last) > 100*time.Millisecond {
		p.last = time.Now()
		p.draw()
	}
	return n, err
}

func (p *uploadProgress) draw() {
	n := p.n.Load()
	pct := 100
	if p.total > 0 {
		pct = int(n * 100 / p.total)
	}
	const width = 30
	bar := strings.Repeat("#", pct*width/100) + strings.Repeat("-", width-pct*width/100)
	fmt.Fprintf(os.Stderr, "\r%-40.40s [%s] %3d%% %s / %s", p.name, bar, pct, human(n), human(p.total))
}

func (p *uploadProgress) done() {
	if p.terminal {
		p.draw()
		fmt.Fprintln(os.Stderr)
	}
}
