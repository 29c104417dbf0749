package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/hosted"
)

// upload receives a package for a hosted repo: the raw body (file name in
// ?filename=), or multipart/form-data with a "package" file part, an
// optional "signature" part and an optional "force" field. It answers
// 202 once the upload is durable and its job recorded.
func (h *Handler) upload(w http.ResponseWriter, r *http.Request) {
	distro, repo := r.PathValue("distro"), r.PathValue("repo")
	if h.pub == nil {
		h.fail(w, r, errorf(http.StatusServiceUnavailable, "publishing is not enabled"))
		return
	}
	tok, err := h.auth.who(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if _, rc, err := h.repoConfig(distro, repo); err != nil {
		h.fail(w, r, err)
		return
	} else if rc.Mode != config.ModeHosted {
		h.fail(w, r, errorf(http.StatusNotFound, distro+"/"+repo+" is a "+rc.Mode+" repo; packages are published to hosted repos only"))
		return
	}
	if err := tok.may(distro + "/" + repo); err != nil {
		h.fail(w, r, err)
		return
	}
	// The package part is capped by the Upload; this caps the whole body
	// (multipart headers, signature) a little above it.
	body := &bodyReader{r: http.MaxBytesReader(w, r.Body, h.pub.MaxSize()+1<<20)}
	u, err := h.pub.NewUpload(distro, repo)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	defer u.Abort()
	force := r.URL.Query().Get("force") == "true" || r.URL.Query().Get("force") == "1"
	if err := h.receive(r, u, body, &force); err != nil {
		h.fail(w, r, body.blame(err))
		return
	}
	j, err := u.Submit(force)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	loc := "/api/v1/jobs/" + j.ID
	w.Header().Set("Location", loc)
	writeJSON(w, http.StatusAccepted, map[string]string{"job": j.ID, "status_url": loc, "status": string(j.Status)})
}

// receive streams the request's parts into u.
func (h *Handler) receive(r *http.Request, u *hosted.Upload, body io.Reader, force *bool) error {
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "multipart/form-data" {
		name := r.URL.Query().Get("filename")
		if err := checkName(name); err != nil {
			return err
		}
		return u.ReadPackage(name, body)
	}
	mr := multipart.NewReader(body, params["boundary"])
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			// A cut body is told apart by blame; this is a malformed one.
			return errorf(http.StatusBadRequest, "read multipart body: "+err.Error())
		}
		switch part.FormName() {
		case "package", "file":
			name := rawFileName(part)
			if err := checkName(name); err != nil {
				return err
			}
			err = u.ReadPackage(name, part)
		case "signature", "sig":
			err = u.ReadSig(part)
		case "force":
			var v []byte
			v, err = io.ReadAll(io.LimitReader(part, 16))
			*force = string(v) == "true" || string(v) == "1"
		default:
			err = errorf(http.StatusBadRequest, "unknown form field "+strconv.Quote(part.FormName())+" (want package, signature, force)")
		}
		if err != nil {
			return err
		}
	}
}

// rawFileName is the part's file name as sent: multipart.Part.FileName
// strips directories, which would hide a "../" the client meant.
func rawFileName(p *multipart.Part) string {
	_, params, err := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
	if err != nil {
		return ""
	}
	return params["filename"]
}

// checkName refuses a client file name that is a path. The name is only
// recorded: the tree file is named from .PKGINFO.
func checkName(name string) error {
	if strings.ContainsAny(name, "/\\\x00") || strings.Contains(name, "..") || len(name) > 255 {
		return errorf(http.StatusBadRequest, "invalid file name "+strconv.Quote(name)+": a package file name has no path")
	}
	return nil
}

// bodyReader remembers the first error of reading the request body, so
// that a client's fault (cut or oversized body) is told from ours.
type bodyReader struct {
	r   io.Reader
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	return n, err
}

// blame turns an upload error caused by the body into a client error.
func (b *bodyReader) blame(err error) error {
	var mbe *http.MaxBytesError
	switch {
	case b.err == nil:
		return err
	case errors.As(b.err, &mbe):
		return fmt.Errorf("%w: body over %d bytes", hosted.ErrTooLarge, mbe.Limit)
	case errors.Is(b.err, io.ErrUnexpectedEOF):
		return errorf(http.StatusBadRequest, "truncated upload: the body ended before its announced length")
	}
	return errorf(http.StatusBadRequest, "read upload: "+b.err.Error())
}

func (h *Handler) deletePackage(w http.ResponseWriter, r *http.Request) {
	distro, repo, arch, name := r.PathValue("distro"), r.PathValue("repo"), r.PathValue("arch"), r.PathValue("name")
	if h.pub == nil {
		h.fail(w, r, errorf(http.StatusServiceUnavailable, "publishing is not enabled"))
		return
	}
	tok, err := h.auth.who(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if _, _, err := h.repoConfig(distro, repo); err != nil {
		h.fail(w, r, err)
		return
	}
	if err := tok.may(distro + "/" + repo); err != nil {
		h.fail(w, r, err)
		return
	}
	if err := h.pub.Delete(r.Context(), distro, repo, arch, name); err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"deleted": name, "repo": distro + "/" + repo, "arch": arch})
}

// jobView is a job as the API shows it: with the status a synchronous
// request would have had, for a failed one.
type jobView struct {
	hosted.Job
	Code int `json:"code,omitempty"`
}

// job returns a publish job; ?wait=30s holds the answer until the job is
// settled (failed, or done with published_at set: the served db lists its
// package) or that time passed (at most 60s), so clients need not poll.
func (h *Handler) job(w http.ResponseWriter, r *http.Request) {
	if h.pub == nil {
		h.fail(w, r, errorf(http.StatusServiceUnavailable, "publishing is not enabled"))
		return
	}
	id := r.PathValue("id")
	var j hosted.Job
	var err error
	if ws := r.URL.Query().Get("wait"); ws != "" {
		d, perr := time.ParseDuration(ws)
		if perr != nil || d < 0 {
			h.fail(w, r, errorf(http.StatusBadRequest, "wait must be a duration such as 30s"))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), min(d, time.Minute))
		j, err = h.pub.WaitJob(ctx, id)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			err = nil
		}
	} else {
		j, err = h.pub.Job(id)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newJobView(j))
}

// newJobView is j as the API shows it: a failed job with the HTTP status
// its reason maps to.
func newJobView(j hosted.Job) jobView {
	v := jobView{Job: j}
	if err := j.Err(); err != nil {
		v.Code = status(err)
	}
	return v
}

// maxJobs bounds a listing of jobs.
const maxJobs = 100

// jobs lists the latest publish jobs, newest first: ?distro= and ?repo=
// narrow it, ?limit= (default 20, at most maxJobs) bounds it. Finished
// jobs are kept for hosted.retention.
func (h *Handler) jobs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 20
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxJobs {
			h.fail(w, r, errorf(http.StatusBadRequest, "limit must be a number from 1 to "+strconv.Itoa(maxJobs)))
			return
		}
		limit = n
	}
	list, err := h.Jobs(q.Get("distro"), q.Get("repo"), limit)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	views := make([]jobView, 0, len(list))
	for _, j := range list {
		views = append(views, newJobView(j))
	}
	writeJSON(w, http.StatusOK, map[string]any{"jobs": views})
}

func (h *Handler) sync(w http.ResponseWriter, r *http.Request) {
	distro, repo := r.PathValue("distro"), r.PathValue("repo")
	if h.syncer == nil {
		h.fail(w, r, errorf(http.StatusServiceUnavailable, "the sync engine is not running"))
		return
	}
	tok, err := h.auth.who(r) // who asks, before what exists is told
	if err != nil {
		h.fail(w, r, err)
		return
	}
	d, ok := h.cfg.Distros[distro]
	if !ok {
		h.fail(w, r, errorf(http.StatusNotFound, "no distro "+strconv.Quote(distro)))
		return
	}
	// A distro-wide sync needs a token for every mirror repo it touches.
	targets := []string{distro + "/" + repo}
	if repo == "" {
		targets = targets[:0]
		for _, rn := range sortedKeys(d.Repos) {
			if d.Repos[rn].Mode == config.ModeMirror {
				targets = append(targets, distro+"/"+rn)
			}
		}
	}
	if err := tok.may(targets...); err != nil {
		h.fail(w, r, err)
		return
	}
	// Trigger refuses only what is not a mirror repo (a 404); a repo
	// already syncing is not refused: its trigger is queued behind it.
	if err := h.syncer.Trigger(distro, repo); err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"sync": strings.TrimSuffix(distro+"/"+repo, "/"), "status_url": "/api/v1/status"})
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.Status())
}
