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

	"github.com/spf13/pflag"
)

const publishUsage = `usage: mirrord publish --url URL [--token T | --token-file F] [--force] [--wait] DISTRO/REPO FILE.pkg.tar.zst...
  Uploads packages (and FILE.sig when present) to a hosted repo of the
  mirrord at URL. The token comes from --token, else MIRRORD_TOKEN, else
  --token-file. With --wait, waits for every job and exits non-zero if one
  failed.`

// publishCommand is `mirrord publish`.
func publishCommand(args []string) error {
	fs := pflag.NewFlagSet("publish", pflag.ContinueOnError)
	fs.Usage = func() { fmt.Fprintln(os.Stderr, publishUsage) }
	base := fs.String("url", os.Getenv("MIRRORD_URL"), "base URL of the mirrord, e.g. http://mirror.lan:8080")
	token, tokenFile := tokenFlags(fs)
	wait := fs.Bool("wait", false, "wait for the publish jobs and fail if one fails")
	force := fs.Bool("force", false, "publish even if the repo holds the same or a newer version")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *base == "" || fs.NArg() < 2 {
		return errors.New(publishUsage)
	}
	tok, err := clientToken(*token, *tokenFile)
	if err != nil {
		return err
	}
	distro, repo, ok := strings.Cut(fs.Arg(0), "/")
	if !ok || distro == "" || repo == "" || strings.Contains(repo, "/") {
		return fmt.Errorf("%q is not DISTRO/REPO\n%s", fs.Arg(0), publishUsage)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c := &publisher{
		base:     strings.TrimSuffix(*base, "/"),
		token:    tok,
		force:    *force,
		client:   &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, ResponseHeaderTimeout: 5 * time.Minute}},
		terminal: isTerminal(os.Stderr),
	}
	type queued struct{ file, job string }
	var jobs []queued
	var failed int
	for _, file := range fs.Args()[1:] {
		id, err := c.upload(ctx, distro, repo, file)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fmt.Fprintf(os.Stderr, "%s: %v\n", file, err)
			failed++
			continue
		}
		fmt.Printf("%s: queued as job %s\n", filepath.Base(file), id)
		jobs = append(jobs, queued{file, id})
	}
	if *wait {
		for _, q := range jobs {
			j, err := c.wait(ctx, q.job)
			switch {
			case err != nil:
				fmt.Fprintf(os.Stderr, "%s: job %s: %v\n", filepath.Base(q.file), q.job, err)
				failed++
			case j.Status != "done":
				fmt.Fprintf(os.Stderr, "%s: job %s failed: %s\n", filepath.Base(q.file), q.job, j.Error)
				failed++
			default:
				fmt.Printf("%s: published %s\n", filepath.Base(q.file), j.Package.Filename)
			}
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d packages not published", failed, fs.NArg()-1)
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

// wait long-polls the job until it is finished.
func (c *publisher) wait(ctx context.Context, id string) (apiJob, error) {
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/api/v1/jobs/"+url.PathEscape(id)+"?wait=50s", nil)
		if err != nil {
			return apiJob{}, err
		}
		var j apiJob
		if err := c.do(req, http.StatusOK, &j); err != nil {
			return j, err
		}
		if j.Status == "done" || j.Status == "failed" {
			return j, nil
		}
	}
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
